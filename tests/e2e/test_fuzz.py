"""A slice of `make fuzz` (1,500 hostile requests instead of 10,000, within 60 s) on a stack
of its own: no answer says the server failed, every poison event is dead-lettered with its
reason, the consumers go on, every service is still SERVING."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FUZZ = [sys.executable, "-m", "shop_devstack", "fuzz"]


def test_hostile_requests_and_poison_events_get_clear_answers_and_lose_nothing() -> None:
    result = subprocess.run(
        [*FUZZ, "--requests", "1500", "--time-limit", "60", "--seed", "11"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    found = re.search(r"verdict: no breach\s+\((.+report\.json)\)", output)
    assert found, output[-6000:]
    report = json.loads(Path(found.group(1)).read_text())

    assert report["ok"] and all(check["ok"] for check in report["checks"])
    assert report["requests"] >= 1500
    assert not {"UNKNOWN", "INTERNAL"} & set(report["codes"])
    assert len(report["codes_by_rpc"]) == 20  # 11 of ours + Check, List, Watch on 3 servers
    assert report["codes"]["INVALID_ARGUMENT"] > report["requests"] // 3
    assert report["codes"]["RESOURCE_EXHAUSTED"] > 0  # requests over 1 MiB
    reasons = {
        (case["topic"], case["case"]): {reason for _, reason in case["dead_letters"]}
        for case in report["poison"]
    }
    assert reasons[("shop.orders.v1", "no event-type header")] == {"no_event_type"}
    assert reasons[("shop.orders.v1", "unknown event-type")] == set()
    assert reasons[("shop.inventory.v1", "1,040,000-byte value as StockLow")] == {"undecodable"}
