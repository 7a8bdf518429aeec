"""The run's reports: the console tables, summary.json and summary.md, var/bench/latest."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shop_chassis.registry import names

from loadtest.results import Row
from loadtest.slo import Verdict

SERVICES = names()


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(rows: Sequence[Row]) -> list[str]:
    header = (
        f"{'profile':<15}{'call':<27}{'rps':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}"
        f"{'errors':>7}{'x py':>7}{'x go':>7}  CPU ms/req {'/'.join(SERVICES)}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        cpu = "/".join(fmt(r.cpu_ms_per_request.get(s), 2) for s in SERVICES)
        lines.append(
            f"{r.profile:<15}{r.call:<27}{r.rps:>8.1f}{fmt(r.p50_ms):>8}{fmt(r.p90_ms):>8}"
            f"{fmt(r.p99_ms):>8}{fmt(r.p999_ms):>8}{r.errors:>7}"
            f"{fmt(r.anchor_ratio('python'), 3):>7}{fmt(r.anchor_ratio('go'), 3):>7}  {cpu}"
        )
        if r.knee_rps is not None or r.steps:
            lines.append(f"{'':<15}  knee: {fmt(r.knee_rps, 0)} rps (p99 under SLO, 0 errors)")
        if r.recovery_s is not None or r.call.endswith("(base)"):
            lines.append(f"{'':<15}  recovery after the burst: {fmt(r.recovery_s)} s")
        if r.problem:
            lines.append(f"{'':<15}  FAILED: {r.problem}")
        for error in r.top_errors:
            lines.append(f"{'':<15}  error: {error}")
    return lines


def anchors_table(rows: Sequence[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.anchor_rps:
            figures = ", ".join(
                f"{name} {rps:.0f} rps p99 {fmt(r.anchor_p99_ms.get(name))} ms"
                for name, rps in r.anchor_rps.items()
            )
            lines.append(f"  {r.profile:<15}{r.call:<27}{figures}")
    return ["anchors (same ghz settings, same run):", *lines] if lines else []


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _tax_lines(taxes: dict[str, Any]) -> list[tuple[str, ...]]:
    """(profile, call, round, rps on, rps off, p99 on, p99 off, tax) per round and overall."""
    out: list[tuple[str, ...]] = []
    for profile, tax in taxes.items():
        if tax["problem"]:
            out.append((profile, tax["call"], "-", "-", "-", "-", "-", "not measured"))
            continue
        for label, f in [
            *((str(r["round"]), r) for r in tax["rounds"]),
            ("overall", tax["overall"]),
        ]:
            out.append(
                (
                    profile,
                    tax["call"],
                    label,
                    f"{f['rps_on']:.1f}",
                    f"{f['rps_off']:.1f}",
                    fmt(f["p99_on_ms"]),
                    fmt(f["p99_off_ms"]),
                    _percent(f["tax"]),
                )
            )
    return out


def tax_table(taxes: dict[str, Any]) -> list[str]:
    """`taxes`: summary.json's "telemetry_tax" (profile -> rounds and overall)."""
    header = (
        f"{'  profile':<17}{'call':<13}{'round':<9}{'rps on':>9}{'rps off':>9}{'p99 on':>9}"
        f"{'p99 off':>9}{'tax':>10}"
    )
    lines = ["telemetry tax (tracing on vs off, same ghz settings, same run; tax = 1 - on/off):"]
    lines.append(header)
    for profile, call, label, *figures, tax in _tax_lines(taxes):
        lines.append(
            f"  {profile:<15}{call:<13}{label:<9}"
            + "".join(f"{f:>9}" for f in figures)
            + f"{tax:>10}"
        )
    return lines


def verdict_table(verdicts: Sequence[Verdict]) -> list[str]:
    header = f"{'profile':<15}{'call':<27}{'check':<20}{'limit':>10}{'actual':>12}  verdict"
    lines = [header, "-" * len(header)]
    for v in verdicts:
        if v.check == "ran" and v.passed:
            continue
        lines.append(
            f"{v.profile:<15}{v.call:<27}{v.check:<20}{fmt(v.limit, 3):>10}"
            f"{fmt(v.actual, 3):>12}  {'PASS' if v.passed else 'FAIL'}"
            + (f"  ({v.note[:100]})" if v.note else "")
        )
    return lines


def summary(
    run_id: str,
    meta: dict[str, Any],
    rows: Sequence[Row],
    verdicts: Sequence[Verdict],
    sampled: dict[str, Any],
    telemetry_tax: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        **meta,
        "passed": all(v.passed for v in verdicts),
        "results": [r.to_json() for r in rows],
        "verdicts": [v.to_json() for v in verdicts],
        "sampled": sampled,
        "telemetry_tax": telemetry_tax or {},
    }


def markdown(data: dict[str, Any], charts: Sequence[str]) -> str:
    lines = [
        f"# Bench run {data['run_id']}",
        "",
        f"Started {data['started']}, profiles {', '.join(data['profiles'])};"
        f" SLO file `{data['slo_file']}`. Verdict: **{'PASS' if data['passed'] else 'FAIL'}**.",
        "",
        "| profile | call | rps | p50 ms | p90 ms | p99 ms | p99.9 ms | errors"
        f" | x py anchor | x go anchor | CPU ms/req ({' / '.join(SERVICES)}) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["results"]:
        anchor = r["anchor"]
        cpu = " / ".join(fmt(r["cpu_ms_per_request"].get(s), 2) for s in SERVICES)
        lines.append(
            f"| {r['profile']} | {r['call']} | {r['rps']:.1f} | {fmt(r['p50_ms'])}"
            f" | {fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['p999_ms'])} | {r['errors']}"
            f" | {fmt((anchor.get('python') or {}).get('ratio'), 3)}"
            f" | {fmt((anchor.get('go') or {}).get('ratio'), 3)} | {cpu} |"
        )
    if data.get("telemetry_tax"):
        lines += [
            "",
            "Telemetry tax: tracing on vs off, same ghz settings, same run;"
            " tax = 1 - rps on / rps off.",
            "",
            "| profile | call | round | rps on | rps off | p99 on ms | p99 off ms | tax |",
            "|---|---|---|---:|---:|---:|---:|---:|",
            *("| " + " | ".join(cells) + " |" for cells in _tax_lines(data["telemetry_tax"])),
        ]
    lines += [
        "",
        "| profile | call | check | limit | actual | verdict |",
        "|---|---|---|---:|---:|---|",
    ]
    for v in data["verdicts"]:
        if v["check"] == "ran" and v["passed"]:
            continue
        lines.append(
            f"| {v['profile']} | {v['call']} | {v['check']} | {fmt(v['limit'], 3)}"
            f" | {fmt(v['actual'], 3)} | {'PASS' if v['passed'] else '**FAIL**'} |"
        )
    lines += ["", *(f"![{c}]({c})" for c in charts)]
    return "\n".join(lines) + "\n"


def write(run_dir: Path, data: dict[str, Any], charts: Sequence[str]) -> None:
    (run_dir / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    (run_dir / "summary.md").write_text(markdown(data, charts))
    latest = run_dir.parent / "latest"
    temporary = run_dir.parent / f".latest-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_dir.name)
    temporary.replace(latest)  # atomic: a reader never sees latest missing
