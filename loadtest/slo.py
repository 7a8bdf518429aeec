"""SLOs from a TOML file (loadtest/slo.toml) and the verdicts a run earns against them.

[defaults]                       # every profile
max_error_ratio = 0.0
[throughput]                     # one profile: any of the keys in `Thresholds`
min_anchor_ratio = 0.05
[throughput.calls.create_order]  # one call of it (overrides the profile's values)
min_rps = 1000
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from loadtest.results import Row

DEFAULT_SLO = Path(__file__).resolve().parent / "slo.toml"


class SloError(Exception):
    pass


@dataclass(frozen=True)
class Thresholds:
    p99_ms: float | None = None  # step: the p99 that defines the knee
    max_error_ratio: float | None = None
    min_rps: float | None = None  # step: applies to the knee
    min_anchor_ratio: float | None = None  # rps / the Python anchor's rps, same settings
    max_recovery_s: float | None = None  # spike
    max_rss_growth_mb: float | None = None  # soak, per service: last sample - first
    max_outbox_backlog: float | None = None  # soak, per service: highest sample
    max_consumer_lag: float | None = None  # soak, per service: highest sample
    max_telemetry_tax: float | None = None  # telemetry_tax: 1 - rps tracing on / off, overall

    def merged(self, other: Thresholds) -> Thresholds:
        return replace(self, **{k: v for k, v in vars(other).items() if v is not None})


KEYS = {f.name for f in fields(Thresholds)}


@dataclass(frozen=True)
class Slo:
    defaults: Thresholds
    profiles: dict[str, Thresholds]
    calls: dict[tuple[str, str], Thresholds]

    def for_call(self, profile: str, call: str) -> Thresholds:
        merged = self.defaults.merged(self.profiles.get(profile, Thresholds()))
        return merged.merged(self.calls.get((profile, call.split(" (")[0]), Thresholds()))


def _thresholds(where: str, table: dict[str, Any]) -> Thresholds:
    unknown = set(table) - KEYS - {"calls"}
    if unknown:
        raise SloError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    values: dict[str, float] = {}
    for key in KEYS & set(table):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SloError(f"{where}.{key}: must be a number >= 0, got {value!r}")
        values[key] = float(value)
    return Thresholds(**values)


def load(path: Path, known_profiles: list[str]) -> Slo:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SloError(f"cannot read SLO file {path}: {exc}") from exc
    defaults = _thresholds("defaults", raw.pop("defaults", {}))
    profiles: dict[str, Thresholds] = {}
    calls: dict[tuple[str, str], Thresholds] = {}
    for name, table in raw.items():
        if name not in known_profiles:
            raise SloError(f"{path}: [{name}] is not a profile; profiles: {known_profiles}")
        if not isinstance(table, dict):
            raise SloError(f"{path}: {name} must be a table")
        profiles[name] = _thresholds(name, table)
        for call, call_table in table.get("calls", {}).items():
            calls[(name, call)] = _thresholds(f"{name}.calls.{call}", call_table)
    return Slo(defaults, profiles, calls)


@dataclass(frozen=True)
class Verdict:
    profile: str
    call: str
    check: str  # a Thresholds key, or "ran"
    limit: float | None
    actual: float | None
    passed: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return vars(self).copy()


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _at_least(value: float | None, limit: float) -> bool:
    return value is not None and value >= limit


def evaluate_row(row: Row, t: Thresholds, is_step: bool) -> list[Verdict]:
    def verdict(check: str, limit: float | None, actual: float | None, ok: bool) -> Verdict:
        return Verdict(row.profile, row.call, check, limit, actual, ok)

    out = [
        Verdict(
            row.profile, row.call, "ran", None, float(row.requests), not row.problem, row.problem
        )
    ]
    if t.p99_ms is not None and not is_step:
        out.append(verdict("p99_ms", t.p99_ms, row.p99_ms, _at_most(row.p99_ms, t.p99_ms)))
    if t.max_error_ratio is not None:
        ratio = row.error_ratio
        out.append(verdict("max_error_ratio", t.max_error_ratio, ratio, ratio <= t.max_error_ratio))
    if t.min_rps is not None:
        actual = row.knee_rps if is_step else row.rps
        check = "min_rps (knee)" if is_step else "min_rps"
        out.append(verdict(check, t.min_rps, actual, _at_least(actual, t.min_rps)))
    if t.min_anchor_ratio is not None and row.anchor_rps:
        anchor_ratio = row.anchor_ratio()
        passed = _at_least(anchor_ratio, t.min_anchor_ratio)
        out.append(verdict("min_anchor_ratio", t.min_anchor_ratio, anchor_ratio, passed))
    if t.max_recovery_s is not None and row.call.endswith("(base)"):
        out.append(
            verdict(
                "max_recovery_s",
                t.max_recovery_s,
                row.recovery_s,
                _at_most(row.recovery_s, t.max_recovery_s),
            )
        )
    return out


def evaluate_soak(
    profile: str, t: Thresholds, series: dict[str, dict[str, list[float]]]
) -> list[Verdict]:
    """`series`: service -> figure ("rss_bytes", "outbox_backlog", "consumer_lag") -> values."""
    out = []
    for service, figures in sorted(series.items()):
        rss = figures.get("rss_bytes", [])
        checks: list[tuple[str, float | None, float | None]] = [
            ("max_rss_growth_mb", t.max_rss_growth_mb, (rss[-1] - rss[0]) / 2**20 if rss else None)
        ]
        for check, limit, figure in (
            ("max_outbox_backlog", t.max_outbox_backlog, "outbox_backlog"),
            ("max_consumer_lag", t.max_consumer_lag, "consumer_lag"),
        ):
            values = figures.get(figure, [])
            if values:
                checks.append((check, limit, max(values)))
            elif not rss:  # never scraped: unknown, which fails; else it has no such figure
                checks.append((check, limit, None))
        for check, limit, actual in checks:
            if limit is not None:
                out.append(Verdict(profile, service, check, limit, actual, _at_most(actual, limit)))
    return out


def evaluate_tax(
    profile: str, call: str, t: Thresholds, tax: float | None, problem: str = ""
) -> list[Verdict]:
    """The telemetry tax over all rounds against `max_telemetry_tax` (None: not measured)."""
    if t.max_telemetry_tax is None:
        return []
    limit = t.max_telemetry_tax
    return [Verdict(profile, call, "max_telemetry_tax", limit, tax, _at_most(tax, limit), problem)]
