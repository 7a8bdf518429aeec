"""Keeps the garbage collector's full collections short: the heap a service builds while it
starts is frozen once it serves.

A started service holds ≈ 110-120 thousand objects that live as long as the process (modules,
classes, protobuf descriptors, SQLAlchemy metadata, Faust's app). CPython's oldest-generation
collection walks all of them: under CreateOrder load each service ran one every 5-10 s, and each
stopped its process for 50-200 ms, longer than the calls' p99 target. `gc.freeze()` moves
them to the permanent generation, which collections skip; the same collections then took ≈ 2 ms
(README, "Numbers"). What is frozen is never collected, so the heap is collected first: only
what is still reachable at that moment stays for good.
"""

from __future__ import annotations

import gc
import time

import structlog
from mode import Service

log = structlog.get_logger(__name__)


def freeze_startup_heap() -> int:
    """Collects, then freezes every object the collector tracks; returns how many it froze."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "startup_heap_frozen",
        objects=frozen,
        took_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return frozen


class StartupHeapFreeze(Service):
    """Freezes the heap when it starts: hosted after the gRPC server, so once it serves."""

    async def on_start(self) -> None:
        freeze_startup_heap()
