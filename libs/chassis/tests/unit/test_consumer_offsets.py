"""The chassis' Kafka consumer commits no offset it did not process, and delivers no batch
fetched across a seek (faust-streaming #606 and #221); Faust's own consumer does both."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from shop_chassis.kafka import OffsetSafeConsumer, ShopApp

PARTITION = TP("shop.orders.v1", 0)


def consumer(cls: type[FaustConsumer]) -> FaustConsumer:
    app = faust.App("offsets-test", broker="kafka://localhost:1")
    return cls(
        app.transport,
        callback=app.topics.on_message,
        on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned,
        loop=app.transport.loop,
    )


def test_the_shop_app_builds_the_offset_safe_consumer() -> None:
    app = ShopApp("offsets-test", broker="kafka://localhost:1")
    assert isinstance(app.consumer, OffsetSafeConsumer)


def commit_offset(cls: type[FaustConsumer], committed: int, acked: list[int]) -> int | None:
    c = consumer(cls)
    c._committed_offset[PARTITION] = committed  # the next offset to read
    c._acked[PARTITION] = list(acked)
    return c._new_offset(PARTITION)


def test_faust_commits_past_a_single_offset_never_acked() -> None:
    # offset 10 was never processed; Faust commits 13, so the group never reads 10 again
    assert commit_offset(FaustConsumer, 10, [11, 12]) == 13


@pytest.mark.parametrize("acked", [[11, 12], [12, 13], [11]])
def test_no_commit_past_the_first_offset_not_acked(acked: list[int]) -> None:
    assert commit_offset(OffsetSafeConsumer, 10, acked) is None


def test_the_acked_run_from_the_committed_offset_is_committed() -> None:
    assert commit_offset(OffsetSafeConsumer, 10, [10, 11, 12, 14]) == 13
    assert commit_offset(OffsetSafeConsumer, 0, [0, 1]) == 2


def test_offsets_known_never_to_come_count_as_done() -> None:
    c = consumer(OffsetSafeConsumer)
    c._committed_offset[PARTITION] = 10
    c._gap[PARTITION].addi(10, 12)  # e.g. transaction markers, compacted away
    c._acked[PARTITION] = [12]
    assert c._new_offset(PARTITION) == 13


def record(offset: int) -> Any:
    return SimpleNamespace(
        topic=PARTITION.topic,
        partition=PARTITION.partition,
        offset=offset,
        timestamp=None,
        timestamp_type=0,
        headers=[],
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
    )


async def delivered(
    cls: type[FaustConsumer], *, seek_during_fetch: bool
) -> tuple[list[int], list[str]]:
    """Offsets a consumer at offset 12 (committed: 10) delivers from a batch [12, 13] whose
    fetch a rebalance's seek to the committed offset overlaps, if `seek_during_fetch`."""
    c = consumer(cls)
    c._active_partitions = {PARTITION}
    c.highwater = lambda tp: 20  # type: ignore[method-assign]
    calls: list[str] = []

    async def seek_to_committed() -> dict[TP, int]:
        calls.append("seek")
        return {PARTITION: 10}

    async def fetch(active_partitions: Any, _timeout: float) -> Any:
        if seek_during_fetch:
            await c.perform_seek()
        return {PARTITION: [record(12), record(13)]}

    c.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    c._thread.getmany = fetch  # type: ignore[method-assign]
    return [message.offset async for _, message in c.getmany(timeout=1.0)], calls


async def test_faust_delivers_a_batch_fetched_before_the_seek() -> None:
    # 12 moves the read offset past 10 and 11, fetched again next: Faust drops them
    assert await delivered(FaustConsumer, seek_during_fetch=True) == ([12, 13], ["seek"])


async def test_a_batch_fetched_across_a_seek_is_dropped_and_fetched_again() -> None:
    assert await delivered(OffsetSafeConsumer, seek_during_fetch=True) == ([], ["seek", "seek"])


async def test_a_batch_fetched_after_the_seek_is_delivered() -> None:
    assert await delivered(OffsetSafeConsumer, seek_during_fetch=False) == ([12, 13], [])
