from pathlib import Path

import pytest

from loadtest import slo
from loadtest.results import Row


def rules(tmp_path: Path, text: str) -> slo.Slo:
    path = tmp_path / "slo.toml"
    path.write_text(text)
    return slo.load(path, ["throughput", "step"])


def row(**fields: object) -> Row:
    base: dict[str, object] = {
        "profile": "throughput",
        "call": "create_order",
        "method": "m",
        "requests": 100,
        "rps": 50.0,
        "p99_ms": 40.0,
    }
    return Row(**{**base, **fields})  # type: ignore[arg-type]


def test_call_values_override_profile_values_which_override_defaults(tmp_path: Path) -> None:
    s = rules(
        tmp_path,
        "[defaults]\nmax_error_ratio = 0\np99_ms = 10\n[throughput]\np99_ms = 20\n"
        "[throughput.calls.create_order]\nmin_rps = 1000\n",
    )

    t = s.for_call("throughput", "create_order (burst)")

    assert (t.max_error_ratio, t.p99_ms, t.min_rps) == (0, 20, 1000)
    assert s.for_call("throughput", "get_stock").min_rps is None


def test_unknown_keys_and_profiles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(slo.SloError, match="unknown keys"):
        rules(tmp_path, "[throughput]\np99 = 1\n")
    with pytest.raises(slo.SloError, match="not a profile"):
        rules(tmp_path, "[nope]\np99_ms = 1\n")
    with pytest.raises(slo.SloError, match="number"):
        rules(tmp_path, "[throughput]\np99_ms = 'fast'\n")


def test_each_threshold_gives_a_verdict() -> None:
    t = slo.Thresholds(p99_ms=50, max_error_ratio=0.01, min_rps=100, min_anchor_ratio=0.1)
    r = row(errors=2, anchor_rps={"python": 400.0})

    verdicts = {v.check: v.passed for v in slo.evaluate_row(r, t, is_step=False)}

    assert verdicts == {
        "ran": True,
        "p99_ms": True,
        "max_error_ratio": False,
        "min_rps": False,
        "min_anchor_ratio": True,
    }


def test_a_missing_figure_fails_its_check() -> None:
    verdicts = slo.evaluate_row(
        row(p99_ms=None, requests=0, problem="no call completed"),
        slo.Thresholds(p99_ms=50),
        is_step=False,
    )

    assert [v.passed for v in verdicts] == [False, False]


def test_a_step_profile_judges_the_knee_not_the_overall_p99() -> None:
    r = row(profile="step", p99_ms=900.0, rps=150.0, knee_rps=80.0)

    verdicts = slo.evaluate_row(r, slo.Thresholds(p99_ms=50, min_rps=100), is_step=True)

    assert [(v.check, v.actual, v.passed) for v in verdicts[1:]] == [
        ("min_rps (knee)", 80.0, False)
    ]


def test_a_soak_must_stay_bounded() -> None:
    series: dict[str, dict[str, list[float]]] = {
        "orders": {
            "rss_bytes": [100 * 2**20, 180 * 2**20],
            "outbox_backlog": [0, 5],
            "consumer_lag": [],
        }
    }
    t = slo.Thresholds(max_rss_growth_mb=50, max_outbox_backlog=10, max_consumer_lag=10)

    verdicts = {v.check: (v.actual, v.passed) for v in slo.evaluate_soak("soak", t, series)}

    # orders consumes nothing: no lag figure, so no lag check
    assert verdicts == {"max_rss_growth_mb": (80.0, False), "max_outbox_backlog": (5, True)}


def test_a_soak_whose_service_was_never_scraped_fails() -> None:
    t = slo.Thresholds(max_rss_growth_mb=50, max_outbox_backlog=10, max_consumer_lag=10)

    verdicts = slo.evaluate_soak("soak", t, {"inventory": {}})

    assert [(v.check, v.actual, v.passed) for v in verdicts] == [
        ("max_rss_growth_mb", None, False),
        ("max_outbox_backlog", None, False),
        ("max_consumer_lag", None, False),
    ]


def test_the_shipped_slo_file_loads() -> None:
    from loadtest import profiles

    s = slo.load(slo.DEFAULT_SLO, profiles.available())
    assert s.for_call("smoke", "get_stock").p99_ms is not None
