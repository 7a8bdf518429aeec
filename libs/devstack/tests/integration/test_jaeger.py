"""Jaeger as the stack starts it: the web UI when its files are there, else still up."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from shop_devstack.stack import Ports, Stack, Supervisor, repo_root

pytestmark = pytest.mark.integration


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_without_the_ui_files_jaeger_serves_its_api_and_a_placeholder(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path / "var", Ports.free(), root=repo_root())
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    (tools / "bin" / "jaeger").symlink_to(stack.tools / "bin" / "jaeger")
    stack.tools = tools  # a checkout where `deploy/bootstrap.sh jaeger-ui` found nothing
    supervisor = Supervisor(stack.var_dir, out=None)
    try:
        assert stack.jaeger_ui_assets is None
        await supervisor.start(stack.jaeger())  # ready: /api/services answers
        home = page(f"http://127.0.0.1:{stack.ports.jaeger_ui}/")
    finally:
        await supervisor.stop_all()
    assert "This is not the Jaeger UI" in home
