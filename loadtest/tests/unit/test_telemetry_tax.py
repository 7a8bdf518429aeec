import json
from pathlib import Path

import pytest

from loadtest import profiles, report, slo
from loadtest.ghz import Call, Outcome
from loadtest.profiles import ProfileError
from loadtest.telemetry_tax import TaxReport, run_order, telemetry_tax


def outcome(requests: int, seconds: float, latencies_ms: list[float]) -> Outcome:
    return Outcome(
        requests=requests,
        rps=requests / seconds,
        wall_s=seconds,
        calls=[Call(0.0, ms, True) for ms in latencies_ms],
    )


def measured() -> TaxReport:
    return TaxReport.of(
        "get_order",
        "shop.orders.v1.OrderService/GetOrder",
        {
            (1, True): outcome(800, 1.0, [10.0] * 98 + [40.0] * 2),
            (1, False): outcome(1000, 1.0, [5.0] * 100),
            (2, False): outcome(1000, 1.0, [5.0] * 98 + [20.0] * 2),
            (2, True): outcome(900, 1.0, [10.0] * 100),
        },
    )


def test_the_tax_is_the_share_of_throughput_that_tracing_costs() -> None:
    assert telemetry_tax(800, 1000) == pytest.approx(0.2)
    assert telemetry_tax(1100, 1000) == pytest.approx(-0.1)  # noise: tracing side faster
    assert telemetry_tax(800, 0) is None  # the untraced side measured nothing


def test_rounds_alternate_and_the_second_round_starts_with_tracing_off() -> None:
    assert run_order(2) == [(1, True), (1, False), (2, False), (2, True)]
    assert run_order(1) == [(1, True), (1, False)]


def test_each_round_and_the_pooled_runs_give_a_tax() -> None:
    tax = measured()

    assert [r.tax for r in tax.rounds] == [pytest.approx(0.2), pytest.approx(0.1)]
    assert tax.overall is not None
    assert (tax.overall.rps_on, tax.overall.rps_off) == (850.0, 1000.0)
    assert tax.tax == pytest.approx(0.15)
    # p99 over all successful calls of a side, not an average of the rounds' p99s
    assert (tax.rounds[0].p99_on_ms, tax.overall.p99_on_ms) == (40.0, 10.0)
    assert tax.overall.p99_off_ms == 5.0


def test_a_tax_over_the_limit_fails_and_one_not_measured_fails_too() -> None:
    limit = slo.Thresholds(max_telemetry_tax=0.2)

    (over,) = slo.evaluate_tax("telemetry_tax", "get_order", limit, 0.25)
    (under,) = slo.evaluate_tax("telemetry_tax", "get_order", limit, 0.15)
    (missing,) = slo.evaluate_tax("telemetry_tax", "get_order", limit, None, "did not start")

    assert (over.check, over.limit, over.actual, over.passed) == (
        "max_telemetry_tax",
        0.2,
        0.25,
        False,
    )
    assert under.passed and not missing.passed and missing.note == "did not start"
    assert slo.evaluate_tax("telemetry_tax", "get_order", slo.Thresholds(), 0.9) == []


def test_the_shipped_profile_and_slo_measure_get_order_against_twenty_percent() -> None:
    profile = profiles.load("telemetry_tax", 6.0)

    (job,) = profile.jobs
    assert profile.telemetry_tax_rounds == 2 and "telemetry_tax" in profiles.DEFAULT_PROFILES
    assert job.config["call"] == "shop.orders.v1.OrderService/GetOrder"
    assert (job.config["concurrency"], job.config["connections"], job.config["cpus"]) == (16, 1, 1)
    assert job.offered_rps is None and job.duration_s == 6.0  # closed loop; --duration honoured
    rules = slo.load(slo.DEFAULT_SLO, profiles.available())
    assert rules.for_call("telemetry_tax", "get_order").max_telemetry_tax == 0.2


def test_a_tax_profile_on_a_call_outside_orders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "get_stock.json").write_text(
        json.dumps({"call": "shop.inventory.v1.InventoryService/GetStock", "data": {}})
    )
    (tmp_path / "tax.json").write_text(
        json.dumps({"bench": {"telemetry_tax": {"call": "get_stock"}}})
    )

    with pytest.raises(ProfileError, match="orders call"):
        profiles.load("tax", None, tmp_path)


def test_the_summary_and_its_tables_carry_rounds_overall_and_the_tax() -> None:
    taxes = {"telemetry_tax": measured().to_json()}
    meta = {"started": "t", "profiles": ["telemetry_tax"], "slo_file": "s"}

    data = report.summary("r1", meta, [], [], {}, taxes)

    written = data["telemetry_tax"]["telemetry_tax"]
    assert written["run_order"] == ["on 1", "off 1", "off 2", "on 2"]
    assert written["rounds"][1] == {
        "round": 2,
        "rps_on": 900.0,
        "rps_off": 1000.0,
        "p99_on_ms": 10.0,
        "p99_off_ms": 20.0,
        "tax": 0.1,
    }
    assert written["overall"]["tax"] == 0.15
    overall = " ".join(report.tax_table(data["telemetry_tax"])[-1].split())
    assert overall == "telemetry_tax get_order overall 850.0 1000.0 10.0 5.0 15.0 %"
    assert "| telemetry_tax | get_order | overall | 850.0 | 1000.0 | 10.0 | 5.0 | 15.0 % |" in (
        report.markdown(data, [])
    )


def test_a_run_without_the_profile_has_an_empty_tax_section() -> None:
    data = report.summary("r1", {"started": "t", "profiles": [], "slo_file": "s"}, [], [], {})

    assert data["telemetry_tax"] == {}
    assert "Telemetry tax" not in report.markdown(data, [])


def test_a_tracing_off_side_that_did_not_start_leaves_no_tax_and_says_why() -> None:
    failed = TaxReport("get_order", "m", problem="it exited with 1 before serving")

    written = failed.to_json()

    assert failed.tax is None and written["overall"] is None and written["rounds"] == []
    assert written["problem"] == "it exited with 1 before serving"
    assert report.tax_table({"telemetry_tax": written})[-1].endswith("not measured")
