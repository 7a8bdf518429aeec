"""`make status` colours its figures by the alerts of deploy/prometheus/rules/alerts.yml."""

from __future__ import annotations

from shop_devstack.stack import repo_root
from shop_devstack.status import ALERTS, GREEN, QUERIES, RED, YELLOW, Judge, alert_rules

RULES = alert_rules(repo_root() / ALERTS)
CREATE_ORDER = {
    "service": "orders",
    "grpc_service": "shop.orders.v1.OrderService",
    "grpc_method": "CreateOrder",
}
GET_ORDER = {**CREATE_ORDER, "grpc_method": "GetOrder"}


def test_every_alert_is_read_with_its_severity_and_a_threshold_to_show() -> None:
    assert RULES, f"no alerts read from {ALERTS}"
    for rule in RULES:
        assert rule.severity in {"critical", "warning"}, rule
        assert rule.threshold, f"{rule.name}: no comparison with a number in {rule.expr!r}"


def test_every_figure_the_alerts_watch_is_judged_by_one_of_them() -> None:
    watched = [
        QUERIES["errors"],
        QUERIES["p99"],
        QUERIES["lag"],
        "shop_outbox_oldest_unsent_age_seconds",
        "shop_kafka_dead_lettered_total",
        "up",
    ]

    assert {metric: any(r.judges(metric) for r in RULES) for metric in watched} == dict.fromkeys(
        watched, True
    )


def test_a_critical_alerts_series_makes_its_row_red_and_only_that_row() -> None:
    judge = Judge(RULES, {"ShopGrpcHighErrorRatio": [CREATE_ORDER]})

    create = judge.cell("12.0 %", QUERIES["errors"], CREATE_ORDER, "orders CreateOrder errors")
    get = judge.cell("0.0 %", QUERIES["errors"], GET_ORDER, "orders GetOrder errors")
    rate = judge.cell("3.10", QUERIES["rps"], CREATE_ORDER, "orders CreateOrder rps")

    assert (create.colour, get.colour, rate.colour) == (RED, GREEN, None)
    assert judge.red
    assert "orders CreateOrder errors 12.0 %: ShopGrpcHighErrorRatio" in judge.summary(False)


def test_a_warning_alerts_series_makes_its_row_yellow_and_nothing_red() -> None:
    dead = {"service": "notifier", "topic": "shop.orders.v1", "reason": "undecodable"}
    judge = Judge(RULES, {"ShopKafkaEventsDeadLettered": [dead]})

    cell = judge.cell("1", "shop_kafka_dead_lettered_total", dead, "notifier dead letters")

    assert cell.colour == YELLOW
    assert not judge.red
    assert judge.summary(False).startswith("yellow  notifier dead letters 1:")


def test_with_no_alert_condition_true_all_is_green() -> None:
    judge = Judge(RULES, {})

    assert judge.cell("0", QUERIES["lag"], {"service": "notifier"}, "lag").colour == GREEN
    assert judge.summary(False) == "all green"
