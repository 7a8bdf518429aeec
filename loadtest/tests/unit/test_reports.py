import json
from pathlib import Path
from typing import Any

import pytest

from loadtest import compare, ghz, report
from loadtest.ghz import Call
from loadtest.profiles import StepSchedule
from loadtest.results import Row, knee, recovery_seconds, step_table
from loadtest.sampler import parse_metrics
from loadtest.slo import Verdict

GHZ_REPORT = {
    "count": 4,
    "total": 2_000_000_000,
    "rps": 2.0,
    "statusCodeDistribution": {"OK": 3, "Unavailable": 1},
    "errorDistribution": {"rpc error: code = Unavailable": 1},
    "details": [
        {"timestamp": "2026-11-30T10:00:00.000000001Z", "latency": 1_000_000, "status": "OK"},
        {"timestamp": "2026-11-30T10:00:00.5+00:00", "latency": 3_000_000, "status": "OK"},
        {"timestamp": "2026-11-30T10:00:01.25Z", "latency": 2_000_000, "status": "OK"},
        {
            "timestamp": "2026-11-30T10:00:01.5Z",
            "latency": 9_000_000,
            "status": "Unavailable",
            "error": "rpc error: code = Unavailable",
        },
    ],
}


def test_a_ghz_report_becomes_counts_errors_and_percentiles_of_good_calls() -> None:
    outcome = ghz.read_report(GHZ_REPORT, {"OK"})

    assert (outcome.requests, outcome.errors, outcome.rps, outcome.wall_s) == (4, 1, 2.0, 2.0)
    assert outcome.percentiles() == {"p50_ms": 2.0, "p90_ms": 3.0, "p99_ms": 3.0, "p999_ms": 3.0}
    assert outcome.top_errors == ["1 x rpc error: code = Unavailable"]
    assert outcome.calls[1].start - outcome.calls[0].start == pytest.approx(0.5, abs=1e-6)


def test_an_expected_status_is_not_an_error() -> None:
    assert ghz.read_report(GHZ_REPORT, {"OK", "Unavailable"}).errors == 0


def test_step_figures_and_the_knee() -> None:
    calls = [Call(0.1, 5, True), Call(1.1, 10, True), Call(2.1, 80, True), Call(3.1, 5, True)]

    steps = step_table(calls, StepSchedule(10, 10, 40, 1.0), started=0.0)

    assert [(s.rate, s.p99_ms) for s in steps] == [(10, 5), (20, 10), (30, 80), (40, 5)]
    assert knee(steps, 50) == 20  # 40 passes again, but after the break
    assert knee(steps, 1) is None


def test_recovery_is_the_time_from_the_burst_end_to_a_normal_window() -> None:
    before = [Call(t / 10, 10, True) for t in range(10)]
    burst = [Call(1 + t / 10, 500, True) for t in range(10)]
    after = [Call(2 + t / 10, 300 if t < 10 else 12, True) for t in range(30)]

    assert recovery_seconds(before + burst + after, burst_start=1.0, burst_end=2.0) == 1.0
    assert recovery_seconds(before + burst, 1.0, 2.0) is None


def test_metrics_are_summed_over_labels() -> None:
    text = (
        "process_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1e8\n"
        'shop_kafka_consumer_lag{topic="a",partition="0"} 3.0\n'
        'shop_kafka_consumer_lag{topic="a",partition="1"} 4.0\n'
    )

    reading = parse_metrics(text)

    assert (reading.cpu_s, reading.rss_bytes, reading.consumer_lag) == (12.5, 1e8, 7.0)
    assert reading.outbox_backlog is None


def a_row(rps: float, p99: float) -> Row:
    return Row(
        "throughput",
        "get_stock",
        "m",
        requests=10,
        rps=rps,
        p99_ms=p99,
        anchor_rps={"python": 1000.0},
        cpu_ms_per_request={"inventory": 2.0},
    )


def test_the_summary_carries_documented_fields_and_the_verdict(tmp_path: Path) -> None:
    verdicts = [Verdict("throughput", "get_stock", "min_rps", 100, 50, False)]
    data = report.summary(
        "r1",
        {"started": "t", "profiles": ["throughput"], "slo_file": "s"},
        [a_row(50, 5)],
        verdicts,
        {},
    )
    run_dir = tmp_path / "r1"
    run_dir.mkdir()

    report.write(run_dir, data, ["c.png"])

    written = json.loads((tmp_path / "latest" / "summary.json").read_text())
    result = written["results"][0]
    assert written["passed"] is False
    assert {
        "profile",
        "call",
        "rps",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "errors",
        "anchor_ratio",
        "cpu_ms_per_request",
    } <= set(result)
    assert result["anchor_ratio"] == 0.05
    md = (run_dir / "summary.md").read_text()
    assert "**FAIL**" in md and "![c.png](c.png)" in md


def test_compare_flags_what_got_more_than_ten_percent_worse() -> None:
    def run(rps: float, p99: float) -> dict[str, Any]:
        meta = {"started": "t", "profiles": [], "slo_file": ""}
        return report.summary("x", meta, [a_row(rps, p99)], [], {})

    lines, count = compare.compare(run(100, 10), run(95, 12))

    flagged = [line for line in lines if line.endswith("REGRESSION")]
    assert count == 1 and len(flagged) == 1  # rps -5 % is within the noise, p99 +20 % is not
    assert "p99 ms" in flagged[0] and "+20%" in flagged[0]
