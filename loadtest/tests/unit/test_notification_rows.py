"""A notification profile reports, per rate, the notifications and the orders placed for them."""

from loadtest import profiles, slo
from loadtest.cli import notification_rows
from loadtest.notification import RateResult


def test_each_rate_shows_whether_create_order_kept_its_own_slo_there() -> None:
    fast_orders_slow_notifications = RateResult(
        100.0,
        placed=4,
        achieved_rate=100.0,
        latencies_ms=[20.0, 30.0, 40.0, 150.0],
        create_latencies_ms=[5.0, 6.0, 7.0, 8.0],
    )
    slow_orders = RateResult(
        150.0,
        placed=3,
        achieved_rate=150.0,
        latencies_ms=[30.0, 40.0, 50.0],
        create_latencies_ms=[40.0, 60.0, 80.0],
    )
    slow_orders.failures["UNAVAILABLE"] = 1

    rows = notification_rows("notify_steady", [fast_orders_slow_notifications, slow_orders], {}, {})

    rules = slo.load(slo.DEFAULT_SLO, profiles.available())
    verdicts = {
        row.call: {
            v.check: v.passed
            for v in slo.evaluate_row(row, rules.for_call(row.profile, row.call), is_step=False)
        }
        for row in rows
    }
    assert verdicts == {
        "order->notification @100/s": {"ran": True, "p99_ms": False, "max_error_ratio": True},
        "create_order (at 100/s)": {"ran": True, "p99_ms": True, "max_error_ratio": True},
        "order->notification @150/s": {"ran": True, "p99_ms": True, "max_error_ratio": False},
        "create_order (at 150/s)": {"ran": True, "p99_ms": False, "max_error_ratio": False},
    }
    create_p99 = [row.p99_ms for row in rows if row.call.startswith("create_order")]
    assert create_p99[0] is not None and 7.0 < create_p99[0] <= 8.0
    assert create_p99[1] is not None and 60.0 < create_p99[1] <= 80.0
