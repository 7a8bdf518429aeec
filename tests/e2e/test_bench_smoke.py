"""CI runs the bench's smoke profile against the test stack: real ghz, real anchors, and the
verdict decides the exit status."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from shop_devstack.stack import Stack
from shop_devstack.testing import finished

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


async def bench(stack: Stack, out_dir: Path, *args: str) -> tuple[int, str]:
    env = dict(os.environ)
    for name in ("orders", "inventory", "notifier"):
        env[f"{name.upper()}_GRPC_PORT"] = str(stack.ports.grpc[name])
        env[f"{name.upper()}_METRICS_PORT"] = str(stack.ports.metrics[name])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtest",
        "--profiles",
        "smoke",
        "--duration",
        "1s",
        "--out-dir",
        str(out_dir),
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await finished(process, 90)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_smoke_profile_passes_its_gates_and_writes_the_summary(
    services: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    code, output = await bench(stack, tmp_path)

    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert code == 0, output
    assert summary["passed"] is True
    calls = {r["call"] for r in summary["results"]}
    assert calls == {"get_stock", "list_products", "get_order", "create_order"}
    for result in summary["results"]:
        assert result["requests"] > 0 and result["errors"] == 0
        assert result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["p999_ms"]
        assert result["anchor"]["python"]["ratio"] > 0 and result["anchor"]["go"]["rps"] > 0
        service = "orders" if "order" in result["call"] else "inventory"
        assert result["cpu_ms_per_request"][service] > 0
        assert (tmp_path / "latest" / result["report"]).is_file()
    assert {v["check"] for v in summary["verdicts"]} >= {"p99_ms", "max_error_ratio", "min_rps"}


async def test_a_breached_slo_fails_the_run(
    services: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    impossible = tmp_path / "slo.toml"
    impossible.write_text("[smoke]\nmin_rps = 1e9\n")

    code, output = await bench(stack, tmp_path / "runs", "--slo", str(impossible), "--no-go-anchor")

    summary = json.loads((tmp_path / "runs" / "latest" / "summary.json").read_text())
    assert code == 1, output
    assert summary["passed"] is False
    failed = [v for v in summary["verdicts"] if not v["passed"]]
    assert {v["check"] for v in failed} == {"min_rps"} and len(failed) == 4
    assert "FAIL" in output
