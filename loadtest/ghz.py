"""Running ghz for one job and reading what it reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shop_chassis.tls import TlsFiles

from loadtest.profiles import Job, parse_duration

HOST = "127.0.0.1"  # loopback only, whatever a profile file says


@dataclass(frozen=True)
class Call:
    """One call from ghz's "details": when it started (unix s), how long it took, its status."""

    start: float
    latency_ms: float
    ok: bool


@dataclass
class Outcome:
    """What one ghz process measured."""

    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    wall_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    problem: str = ""  # ghz did not run, or no call completed
    top_errors: list[str] = field(default_factory=list)  # the most frequent error messages

    def percentiles(self) -> dict[str, float | None]:
        return latency_percentiles([c.latency_ms for c in self.calls if c.ok])


PERCENTILES = {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "p999_ms": 99.9}


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_percentiles(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {key: percentile(ordered, pct) for key, pct in PERCENTILES.items()}


def _unix_seconds(stamp: str) -> float:
    """RFC 3339 with up to nanoseconds (Python parses at most microseconds)."""
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {stamp!r}")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    whole = datetime.fromisoformat(match.group(1) + zone)
    return whole.timestamp() + float("0." + (match.group(2) or "0"))


def read_report(report: dict[str, Any], expected: set[str]) -> Outcome:
    """Summarises a ghz JSON report; a status outside `expected` counts as an error."""
    statuses = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    calls = [
        Call(
            _unix_seconds(str(d["timestamp"])),
            float(d["latency"]) / 1e6,
            str(d.get("status") or "OK") in expected,
        )
        for d in report.get("details") or []
    ]
    count = int(report.get("count") or 0)
    outcome = Outcome(
        requests=count,
        errors=sum(n for code, n in statuses.items() if code not in expected),
        rps=float(report.get("rps") or 0.0),
        wall_s=float(report.get("total") or 0) / 1e9,
        statuses=statuses,
        calls=calls,
    )
    if count == 0:
        outcome.problem = "no call completed"
    top = Counter({str(k): int(v) for k, v in (report.get("errorDistribution") or {}).items()})
    outcome.top_errors = [f"{n} x {message[:200]}" for message, n in top.most_common(3)]
    return outcome


def tls_options(tls: TlsFiles | None) -> dict[str, Any]:
    """ghz's options for plaintext, or for mutual TLS (`--cacert --cert --key`)."""
    if tls is None:
        return {"insecure": True}
    return {"insecure": False, "cacert": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key)}


def _write_config(
    job_config: dict[str, Any], address: str, stem: Path, tls: TlsFiles | None
) -> Path:
    config = dict(job_config)
    config.update(host=address, format="json", output=f"{stem}.json", **tls_options(tls))
    path = Path(f"{stem}.ghz.json")
    path.write_text(json.dumps(config, indent=2) + "\n")
    Path(f"{stem}.json").unlink(missing_ok=True)
    return path


def _read_report(stem: Path, expected: set[str]) -> Outcome:
    path = Path(f"{stem}.json")
    try:
        return read_report(json.loads(path.read_text()), expected)
    except (OSError, ValueError) as exc:
        return Outcome(problem=f"cannot read {path}: {exc}")


async def run(
    job_config: dict[str, Any],
    address: str,
    stem: Path,
    ghz: Path,
    expected: set[str],
    tls: TlsFiles | None = None,
) -> Outcome:
    """Runs ghz with `job_config` against `address` (over mutual TLS with `tls`); writes
    <stem>.ghz.json and <stem>.json."""
    config_path = _write_config(job_config, address, stem, tls)
    timeout_s = parse_duration(str(job_config.get("timeout", "20s")))
    limit = parse_duration(str(job_config["max-duration"])) + timeout_s + 60
    process = await asyncio.create_subprocess_exec(
        str(ghz),
        f"--config={config_path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        return Outcome(problem=f"ghz did not finish in {limit:g}s; killed")
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        text = output.decode(errors="replace").strip() or "(no output)"
        return Outcome(problem=f"ghz exited with {process.returncode}: {text[-800:]}")
    return _read_report(stem, expected)


async def run_job(
    job: Job, address: str, stem: Path, ghz: Path, tls: TlsFiles | None = None
) -> Outcome:
    return await run(job.config, address, stem, ghz, job.expected_statuses(), tls)


async def render_html(ghz_html: Path, stem: Path) -> None:
    """ghz's own HTML page for <stem>.json, beside it; a failure leaves only the JSON."""
    process = await asyncio.create_subprocess_exec(
        str(ghz_html),
        f"{stem}.json",
        f"{stem}.html",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await process.wait()


def windows(calls: Sequence[Call], start: float, width_s: float) -> list[list[Call]]:
    """Calls grouped by the `width_s` window (from `start`) in which they started."""
    if not calls:
        return []
    count = int((max(c.start for c in calls) - start) // width_s) + 1
    groups: list[list[Call]] = [[] for _ in range(max(count, 0))]
    for call in calls:
        index = int((call.start - start) // width_s)
        if 0 <= index < len(groups):
            groups[index].append(call)
    return groups


def first_start(calls: Sequence[Call]) -> float:
    return min((c.start for c in calls), default=0.0)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
