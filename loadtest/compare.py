"""`make bench-compare A=<run> B=<run>`: two runs side by side, regressions over 10 % flagged.

A run is a folder under var/bench (its id, `latest`) or a path to one. B is the newer run;
exit status 1 when something regressed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

THRESHOLD = 0.10
ROOT = Path(__file__).resolve().parent.parent
# (field in a result, label, True when higher is better)
MEASURES = (
    ("rps", "rps", True),
    ("p99_ms", "p99 ms", False),
    ("anchor_ratio", "x anchor", True),
    ("cpu_total", "CPU ms/req", False),
)


def resolve(run: str, bench_dir: Path) -> Path:
    path = Path(run)
    folder = path if path.is_dir() else bench_dir / run
    summary = folder / "summary.json"
    if not summary.is_file():
        raise SystemExit(f"error: no summary.json in {folder}")
    return summary


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    cpu = [v for v in result["cpu_ms_per_request"].values() if v is not None]
    return {
        "rps": result["rps"],
        "p99_ms": result["p99_ms"],
        "anchor_ratio": result["anchor_ratio"],
        "cpu_total": sum(cpu) if cpu else None,
    }


def regressed(before: float | None, after: float | None, higher_is_better: bool) -> bool:
    if before is None or after is None or before == 0:
        return False
    change = (after - before) / before
    return change < -THRESHOLD if higher_is_better else change > THRESHOLD


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], int]:
    """The lines to print and the number of regressions (B against A)."""
    rows_a = {(r["profile"], r["call"]): figures(r) for r in a["results"]}
    rows_b = {(r["profile"], r["call"]): figures(r) for r in b["results"]}
    lines = [
        f"A = {a['run_id']} ({a['started']}), B = {b['run_id']} ({b['started']})",
        f"{'profile':<15}{'call':<27}{'measure':<12}{'A':>10}{'B':>10}{'change':>9}",
    ]
    lines.append("-" * len(lines[-1]))
    count = 0
    for key in [k for k in rows_a if k in rows_b]:
        for field, label, higher_is_better in MEASURES:
            before, after = rows_a[key][field], rows_b[key][field]
            change = f"{(after - before) / before:+.0%}" if before and after is not None else "-"
            flag = regressed(before, after, higher_is_better)
            count += flag
            lines.append(
                f"{key[0]:<15}{key[1]:<27}{label:<12}{_fmt(before):>10}{_fmt(after):>10}"
                f"{change:>9}" + ("  REGRESSION" if flag else "")
            )
    for key in sorted(set(rows_a) ^ set(rows_b)):
        lines.append(f"{key[0]:<15}{key[1]:<27}only in {'A' if key in rows_a else 'B'}")
    lines.append(f"\n{count} regression(s) over {THRESHOLD:.0%}")
    return lines, count


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-compare A=... B=...", description=__doc__)
    parser.add_argument("a", help="the earlier run: id under var/bench, `latest`, or a folder")
    parser.add_argument("b", help="the later run")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args(argv)
    a = json.loads(resolve(args.a, args.bench_dir).read_text())
    b = json.loads(resolve(args.b, args.bench_dir).read_text())
    lines, count = compare(a, b)
    print("\n".join(lines))
    return 1 if count else 0


if __name__ == "__main__":
    sys.exit(main())
