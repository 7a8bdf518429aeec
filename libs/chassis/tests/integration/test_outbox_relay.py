"""The outbox relay's bookkeeping against real SQLite and PostgreSQL (Kafka's side, the
acknowledgement, is a stand-in here; tests/e2e run the relay against a real broker, and
test_platform checks that the real client refuses an oversized record as the stand-in does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from shop.events.v1 import events_pb2
from shop_chassis.db import Database, PostgresDatabase, open_database
from shop_chassis.outbox import OutboxRelay, add_event, outbox_table
from sqlalchemy import MetaData, select

metadata = MetaData()
outbox = outbox_table(metadata)


class AcknowledgingProducer:
    """Acknowledges every send at once, and remembers the event ids in order; refuses the
    ids in `refuse_at_send` as Faust's producer does a record over the client's size limit,
    and fails the delivery of those in `refuse_at_broker` as a broker refusing one does."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.refuse_at_send: set[str] = set()
        self.refuse_at_broker: set[str] = set()

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[None]:
        event_id = dict(kwargs["headers"])["event-id"].decode()
        if event_id in self.refuse_at_send:
            refusal = MessageSizeTooLargeError("The message is 2097240 bytes when serialized")
            raise ProducerSendError(f"Error while sending: {refusal!r}") from refusal
        acknowledged = asyncio.get_running_loop().create_future()
        if event_id in self.refuse_at_broker:
            acknowledged.set_exception(MessageSizeTooLargeError())
        else:
            self.sent.append(event_id)
            acknowledged.set_result(None)
        return acknowledged


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    await database.write(metadata.create_all, name="schema")
    yield database
    await database.dispose()


@pytest.fixture
def producer() -> AcknowledgingProducer:
    return AcknowledgingProducer()


@pytest.fixture
def relay(database: Database, producer: AcknowledgingProducer) -> OutboxRelay:
    return OutboxRelay(database, outbox, cast(faust.App, SimpleNamespace(producer=producer)))


def stage(event_id: str) -> Any:
    event = events_pb2.OrderCancelled(event_id=event_id)
    return lambda c: add_event(c, outbox, topic="t", key="k", event=event)


async def unsent(database: Database) -> list[str]:
    query = select(outbox.c.event_id).where(outbox.c.sent_at.is_(None))
    return await database.read(lambda c: list(c.scalars(query)))


async def settle(relay: OutboxRelay) -> None:
    """Wait for the marks the relay runs in the background."""
    await asyncio.gather(*relay._marking)


async def test_published_rows_are_marked_and_not_published_again(
    relay: OutboxRelay, database: Database, producer: AcknowledgingProducer
) -> None:
    await database.write(stage("e-1"), name="stage")
    await database.write(stage("e-2"), name="stage")

    assert await relay.publish_batch() == 2
    await settle(relay)

    assert await relay.publish_batch() == 0
    assert producer.sent == ["e-1", "e-2"]
    assert await unsent(database) == []


async def test_rows_kafka_refuses_for_good_are_parked_and_the_rest_still_go_out(
    relay: OutboxRelay, database: Database, producer: AcknowledgingProducer
) -> None:
    for event_id in ("e-1", "too-big", "e-2", "refused", "e-3"):
        await database.write(stage(event_id), name="stage")
    producer.refuse_at_send.add("too-big")
    producer.refuse_at_broker.add("refused")

    assert await relay.publish_batch() == 5
    await settle(relay)

    assert producer.sent == ["e-1", "e-2", "e-3"]
    assert await relay.publish_batch() == 0  # parked rows are not tried again
    parked = select(outbox.c.event_id, outbox.c.park_reason).where(outbox.c.parked_at.is_not(None))
    reasons = dict(await database.read(lambda c: c.execute(parked).all()))
    assert reasons.keys() == {"too-big", "refused"}
    assert reasons["too-big"].startswith("ProducerSendError")
    assert "MessageSizeTooLargeError" in reasons["too-big"]
    assert await unsent(database) == ["too-big", "refused"]  # never marked sent, never pruned


async def test_rows_whose_mark_failed_are_published_again(
    relay: OutboxRelay, database: Database, producer: AcknowledgingProducer
) -> None:
    await database.write(stage("e-1"), name="stage")
    write = database.write

    async def failing_marks(work: Any, *, name: str) -> Any:
        if name == "outbox_mark_sent":
            raise OSError("disk away")
        return await write(work, name=name)

    database.write = failing_marks  # type: ignore[method-assign]
    assert await relay.publish_batch() == 1
    await settle(relay)
    database.write = write  # type: ignore[method-assign]

    assert await relay.publish_batch() == 1
    await settle(relay)
    assert producer.sent == ["e-1", "e-1"]
    assert await unsent(database) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_row_committed_after_a_later_one_is_still_published(
    relay: OutboxRelay, database: Database, producer: AcknowledgingProducer
) -> None:
    # On PostgreSQL ids are taken at insert, not at commit: A takes id 1, B id 2 and commits
    # first; the relay sees B alone, and must still find A once A commits.
    assert isinstance(database, PostgresDatabase)
    a_staged, a_may_commit = asyncio.Event(), asyncio.Event()

    async def transaction_a() -> None:
        async with database._engine.begin() as connection:
            await connection.run_sync(stage("A"))
            a_staged.set()
            await a_may_commit.wait()

    a = asyncio.ensure_future(transaction_a())
    await a_staged.wait()
    await database.write(stage("B"), name="stage")
    assert await relay.publish_batch() == 1
    await settle(relay)
    a_may_commit.set()
    await a

    assert await relay.publish_batch() == 1
    assert producer.sent == ["B", "A"]
