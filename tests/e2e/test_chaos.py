"""A short slice of `make chaos` on the default topology: services killed, the broker
restarted, under load — and nothing lost. (The cluster's full run: `make chaos`.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHAOS = [sys.executable, "-m", "shop_devstack", "chaos"]


def test_killing_each_service_and_the_broker_under_load_loses_nothing() -> None:
    result = subprocess.run(
        [*CHAOS, "--topology", "single", "--rate", "5", "--gap", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    found = re.search(r"verdict: nothing lost\s+\((.+verdict\.json)\)", output)
    assert found, output[-4000:]
    verdict = json.loads(Path(found.group(1)).read_text())

    assert verdict["ok"] and all(check["ok"] for check in verdict["checks"])
    assert [fault["fault"].split(" ")[:3] for fault in verdict["faults"]][:3] == [
        ["kill", "-9", "inventory"],
        ["kill", "-9", "orders"],
        ["kill", "-9", "notifier"],
    ]
    assert all(fault["recovery_seconds"] is not None for fault in verdict["faults"])
    assert verdict["requests"]["orders_placed"] > 50
    assert verdict["restarts"] == {"inventory": 1, "orders": 1, "notifier": 1, "kafka": 1}
