"""Helpers for the deploy/ tests: the pinned tools `make deploy-check` bootstraps, rendering
the chart and loading the Compose file the way Compose does."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "shop"
COMPOSE_DIR = ROOT / "deploy" / "compose"
TOOLS = ROOT / ".tools" / "bin"


def versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "deploy" / "versions.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `make deploy-check` (it bootstraps helm, kubeconform,"
            " the Kubernetes schemas and compose-config)"
        )
    return str(path)


def run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


Manifests = list[dict[str, Any]]
Render = Callable[..., Manifests]


@pytest.fixture(scope="session")
def render() -> Render:
    """`helm template` of the chart with extra flags; the manifests as dicts."""

    def render(*flags: str) -> Manifests:
        result = run(
            [
                tool("helm"),
                "template",
                "shop",
                str(CHART),
                "--namespace",
                "shop",
                "--kube-version",
                versions()["KUBERNETES_SCHEMA_VERSION"],
                *flags,
            ]
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return render


def of_kind(manifests: Manifests, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """deploy/compose/compose.yaml as `docker compose config` resolves it (anchors merged,
    paths made absolute from the file's folder), by compose-go's LoadProject."""
    result = run([tool("compose-config"), str(COMPOSE_DIR / "compose.yaml")])
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded
