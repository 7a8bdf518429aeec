"""One row per (profile, call): what was measured, beside the anchors, with what it cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.ghz import Call, latency_percentiles, windows
from loadtest.profiles import StepSchedule


@dataclass
class Step:
    """One rate of a step schedule."""

    rate: int
    requests: int
    errors: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


@dataclass
class Row:
    profile: str
    call: str  # the call profile, with the job's role in a spike ("create_order (burst)")
    method: str  # the gRPC method, or what the bench's own client measured
    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    offered_rps: float | None = None  # open loop: the rate asked for (a step's top rate)
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    status_codes: dict[str, int] = field(default_factory=dict)
    anchor_rps: dict[str, float] = field(default_factory=dict)  # "python"/"go" -> rps
    anchor_p99_ms: dict[str, float | None] = field(default_factory=dict)
    cpu_ms_per_request: dict[str, float | None] = field(default_factory=dict)
    peak_rss_mb: dict[str, float | None] = field(default_factory=dict)
    knee_rps: float | None = None  # step: highest rate with p99 under the SLO and 0 errors
    steps: list[Step] = field(default_factory=list)
    recovery_s: float | None = None  # spike base job: burst end -> p99 back to normal
    tracing: bool | None = None  # telemetry_tax: whether the process measured traces
    round: int | None = None  # telemetry_tax: which round of on/off runs
    problem: str = ""  # ghz failed or nothing completed: the row fails whatever its SLO
    top_errors: list[str] = field(default_factory=list)
    report: str = ""  # the ghz JSON report, relative to the run folder

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    def anchor_ratio(self, anchor: str = "python") -> float | None:
        base = self.anchor_rps.get(anchor)
        return self.rps / base if base else None

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "call": self.call,
            "method": self.method,
            "requests": self.requests,
            "errors": self.errors,
            "error_ratio": round(self.error_ratio, 6),
            "rps": round(self.rps, 2),
            "offered_rps": self.offered_rps,
            "p50_ms": _ms(self.p50_ms),
            "p90_ms": _ms(self.p90_ms),
            "p99_ms": _ms(self.p99_ms),
            "p999_ms": _ms(self.p999_ms),
            "status_codes": self.status_codes,
            "anchor": {
                name: {
                    "rps": round(rps, 2),
                    "p99_ms": _ms(self.anchor_p99_ms.get(name)),
                    "ratio": _round(self.anchor_ratio(name), 4),
                }
                for name, rps in self.anchor_rps.items()
            },
            "anchor_ratio": _round(self.anchor_ratio(), 4),
            "cpu_ms_per_request": {k: _round(v, 3) for k, v in self.cpu_ms_per_request.items()},
            "peak_rss_mb": {k: _round(v, 1) for k, v in self.peak_rss_mb.items()},
            "knee_rps": self.knee_rps,
            "steps": [vars(step) for step in self.steps],
            "recovery_s": _round(self.recovery_s, 2),
            "tracing": self.tracing,
            "round": self.round,
            "problem": self.problem,
            "top_errors": self.top_errors,
            "report": self.report,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ms(value: float | None) -> float | None:
    return _round(value, 3)


def step_table(calls: list[Call], schedule: StepSchedule, started: float) -> list[Step]:
    """Per-rate figures of a step run: calls are grouped by the step they started in."""
    groups = windows(calls, started, schedule.step_s)
    steps = []
    for rate, group in zip(schedule.rates, groups, strict=False):
        pct = latency_percentiles([c.latency_ms for c in group if c.ok])
        steps.append(
            Step(
                rate,
                len(group),
                sum(1 for c in group if not c.ok),
                pct["p50_ms"],
                pct["p90_ms"],
                pct["p99_ms"],
            )
        )
    return steps


def knee(steps: list[Step], p99_limit_ms: float) -> float | None:
    """The highest rate before the first step whose p99 breaks the limit or has errors."""
    best: float | None = None
    for step in steps:
        if not step.requests or step.errors or step.p99_ms is None or step.p99_ms > p99_limit_ms:
            break
        best = step.rate
    return best


def recovery_seconds(
    calls: list[Call], burst_start: float, burst_end: float, window_s: float = 1.0
) -> float | None:
    """From the burst's end to the first window whose p99 is back within 2x the p99 before
    the burst (with no errors); None if it never got there."""
    before = [c.latency_ms for c in calls if c.ok and c.start < burst_start]
    baseline = latency_percentiles(before)["p99_ms"]
    if baseline is None:
        return None
    after = [c for c in calls if c.start >= burst_end]
    for index, group in enumerate(windows(after, burst_end, window_s)):
        p99 = latency_percentiles([c.latency_ms for c in group if c.ok])["p99_ms"]
        if group and all(c.ok for c in group) and p99 is not None and p99 <= 2 * baseline:
            return index * window_s
    return None
