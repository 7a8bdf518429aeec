"""`make run`'s command end to end, on ports of its own: up, refused twice, stopped clean."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shop_devstack.stack import Ports, repo_root

pytestmark = pytest.mark.integration

VAR = repo_root() / "var" / "test" / "run-command"


def run_command(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shop_devstack", "run", "--var-dir", str(VAR)],
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def processes_using(folder: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def running() -> Iterator[tuple[subprocess.Popen[str], dict[str, str], list[str]]]:
    shutil.rmtree(VAR, ignore_errors=True)
    env = Ports.free().as_env()
    first = run_command(env)
    output: list[str] = []
    deadline = time.monotonic() + 150
    assert first.stdout is not None
    for line in first.stdout:  # up to the banner's last line, the ListProducts example
        output.append(line)
        if "InventoryService/ListProducts" in line or time.monotonic() > deadline:
            break
    # Keep reading: a full pipe would block the supervisor (and its Ctrl-C handling).
    threading.Thread(target=lambda: output.extend(first.stdout or []), daemon=True).start()
    try:
        yield first, env, output
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def service_pid(name: str) -> int:
    """The pid of this test's `name` service (not one of another stack on the machine)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline[-3:] == [b"-m", name.encode(), b""]
            and f"SHOP_VAR_DIR={VAR}".encode() in environ
        ):
            return int(proc.name)
    raise LookupError(f"no {name} process of this test's stack")


def wait_for_line(output: list[str], text: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not any(text in line for line in output):
        assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(output)[-3000:]}"
        time.sleep(0.2)


def test_run_comes_up_refuses_a_second_run_restarts_a_killed_service_and_stops_on_ctrl_c(
    running: tuple[subprocess.Popen[str], dict[str, str], list[str]],
) -> None:
    first, env, output = running
    banner = "".join(output)
    assert "shop is up" in banner, banner[-3000:]
    assert f"127.0.0.1:{env['ORDERS_GRPC_PORT']}" in banner
    assert "grpcurl -plaintext" in banner
    red_graphs = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}/graph?g0.expr=shop:grpc_server_"
    assert red_graphs in banner

    second = subprocess.run(
        [sys.executable, "-m", "shop_devstack", "run", "--var-dir", str(VAR / "second")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert "already in use" in second.stderr and "port " in second.stderr

    os.kill(service_pid("orders"), signal.SIGKILL)
    wait_for_line(output, "[supervisor] orders exited with code -9; restart 1 in 1 s", 10)
    wait_for_line(output, "[supervisor] orders is back", 90)

    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
    assert first.wait(timeout=90) == 0
    wait_for_line(output, "[run] restarts: orders 1", 5)
    assert processes_using(VAR) == []
