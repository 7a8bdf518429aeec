"""Transactional outbox: events are written in the same database transaction as the state
change that caused them, and a relay publishes them to Kafka afterwards.

Events go out through the process's one Kafka producer, Faust's (made idempotent by
`shop_chassis.kafka.ShopApp`), which the dead-letter path uses too. A row is marked sent
only after the broker acknowledged it (acks=all), so a crash or a Kafka outage delays
events but never loses them; a crash between the ack and the mark re-publishes, which
consumers absorb by deduplicating on event id.
Rows go out in id order; the idempotent producer keeps that order within a partition,
hence per order id or sku (the keys). The request's trace context is stored with the row
and restored when it is published, so the publish belongs to the request's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import faust
import structlog
from aiokafka.errors import CorruptRecordException, InvalidTopicError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from mode import Service
from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from shop_chassis.db import Database

log = structlog.get_logger(__name__)

CONTENT_TYPE = b"application/x-protobuf"

published_total = Counter(
    "shop_outbox_published_total", "Outbox events acknowledged by Kafka", ["topic"]
)
publish_failures_total = Counter(
    "shop_outbox_publish_failures_total", "Outbox publish attempts that failed", ["topic"]
)
parked_total = Counter(
    "shop_outbox_parked_total", "Outbox rows Kafka refused for good, parked unsent", ["topic"]
)
parked_rows = Gauge("shop_outbox_parked_rows", "Outbox rows parked unsent (Kafka refused them)")
backlog_rows = Gauge("shop_outbox_backlog", "Outbox rows not yet acknowledged by Kafka")

# Refusals no retry can change: the record is too large, corrupt, or its topic name invalid.
# (Not KafkaTimeoutError, non-"retriable" to aiokafka but what an outage looks like here.)
PERMANENT_REFUSALS = (MessageSizeTooLargeError, InvalidTopicError, CorruptRecordException)


def refused_for_good(exc: BaseException) -> bool:
    """Kafka's refusal from the delivery, or from the send, where Faust wraps it."""
    if isinstance(exc, ProducerSendError):
        exc = exc.__cause__ or exc
    return isinstance(exc, PERMANENT_REFUSALS)


oldest_unsent_age = Gauge(
    "shop_outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox row (0 if none)"
)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("trace_context", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        # Set when Kafka refused the row for good (too large, invalid): never sent, kept to see.
        Column("parked_at", DateTime(timezone=True), nullable=True),
        Column("park_reason", Text, nullable=True),
        # The relay's unsent rows (sent_at NULL) in id order; the pruner's oldest sent rows.
        Index("ix_outbox_unsent", "sent_at", "id"),
    )


def new_event_id() -> str:
    return str(uuid.uuid4())


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def add_event(
    connection: Connection, outbox: Table, *, topic: str, key: str, event: Message
) -> None:
    """Stage `event` for publishing; commits or rolls back with `connection`'s transaction.

    The event must have an `event_id` field. The current trace context is stored with it.
    """
    add_events(connection, outbox, [(topic, key, event)])


def add_events(
    connection: Connection, outbox: Table, events: Sequence[tuple[str, str, Message]]
) -> None:
    """Stage several (topic, key, event) in one statement; see `add_event`."""
    if not events:
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    created_at = now()
    connection.execute(
        _insert(outbox),
        [
            {
                "event_id": getattr(event, "event_id"),  # noqa: B009 (every event message has one)
                "topic": topic,
                "key": key,
                "event_type": event.DESCRIPTOR.name,
                "payload": event.SerializeToString(),
                "trace_context": carrier,
                "created_at": created_at,
            }
            for topic, key, event in events
        ],
    )


@cache
def _insert(outbox: Table) -> Insert:
    return outbox.insert()


class OutboxRelay(Service):
    """Publishes unsent outbox rows in batches; woken right after a commit, and polls too.

    Marking rows sent is a write like any other, queued behind the requests' transactions;
    the relay does not wait for it. It remembers which rows the broker acknowledged but are
    not marked yet and leaves them out of its next reads, so events leave at the pace of
    Kafka's acks, not of the database's write queue. (Not a cursor on the id: on PostgreSQL a
    lower id can commit after a higher one.) Should a mark fail, those rows are read and
    published again; consumers deduplicate.
    """

    def __init__(
        self,
        database: Database,
        outbox: Table,
        app: faust.App,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.database = database
        self.outbox = outbox
        self.app = app
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._unsent = (
            select(outbox)
            .where(outbox.c.sent_at.is_(None), outbox.c.parked_at.is_(None))
            .order_by(outbox.c.id)
            .limit(bindparam("limit", type_=Integer))
        )
        self._mark = (
            update(outbox)
            .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
            .values(sent_at=bindparam("sent_at"))
        )
        self._park = (
            update(outbox)
            .where(outbox.c.id == bindparam("row_id"))
            .values(parked_at=bindparam("parked_at"), park_reason=bindparam("reason"))
        )
        self._backlog = select(func.count(), func.min(outbox.c.created_at)).where(
            outbox.c.sent_at.is_(None), outbox.c.parked_at.is_(None)
        )
        self._parked = select(func.count()).where(outbox.c.parked_at.is_not(None))
        self._being_marked: set[int] = set()  # acknowledged by Kafka, sent_at not committed yet
        self._marking: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Call after committing outbox rows: publish now rather than at the next poll."""
        self._wakeup.set()

    async def on_stop(self) -> None:
        # Marks in flight finish, so a clean restart publishes nothing twice.
        if self._marking:
            await asyncio.wait(self._marking, timeout=5)

    @Service.timer(1.0)
    async def _measure_backlog(self) -> None:
        try:
            count, oldest = await self.database.read(lambda c: c.execute(self._backlog).one())
            parked = await self.database.read(lambda c: c.execute(self._parked).scalar_one())
        except Exception as exc:  # database away: keep the last values, try again
            log.debug("outbox_backlog_unavailable", error=repr(exc))
            return
        backlog_rows.set(count)
        parked_rows.set(parked)
        if oldest is None:
            oldest_unsent_age.set(0)
        else:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            oldest_unsent_age.set(max(0.0, (now() - oldest).total_seconds()))

    @Service.task
    async def _relay(self) -> None:
        backoff = 0.5
        while not self.should_stop:
            try:
                published = await self.publish_batch()
                backoff = 0.5
            except Exception as exc:  # Kafka or the database away, timeouts: retry
                log.warning("outbox_publish_failed", error=repr(exc), retry_in_seconds=backoff)
                await self.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
                self._wakeup.clear()

    async def publish_batch(self) -> int:
        """Publish up to batch_size unsent rows; returns how many were acknowledged."""
        # Rows being marked are still unsent in the table: read past them, leave them out here
        # (a fixed statement stays prepared; an id list in SQL would be a new one each time).
        being_marked = set(self._being_marked)
        limit = self.batch_size + len(being_marked)
        rows = [
            row
            for row in await self.database.read(
                lambda c: c.execute(self._unsent, {"limit": limit}).all()
            )
            if row.id not in being_marked
        ][: self.batch_size]
        if not rows:
            return 0
        producer = self.app.producer
        deliveries = []
        refused: list[tuple[Any, BaseException]] = []
        for row in rows:
            token = otel_context.attach(propagate.extract(row.trace_context))
            try:
                delivery = await producer.send(
                    row.topic,
                    key=row.key.encode(),
                    value=row.payload,
                    partition=None,
                    timestamp=None,
                    headers=[
                        ("event-id", row.event_id.encode()),
                        ("event-type", row.event_type.encode()),
                        ("content-type", CONTENT_TYPE),
                    ],
                )
            except Exception as exc:
                if not refused_for_good(exc):  # refused before it left (e.g. over max size)
                    raise
                refused.append((row, exc))
                continue
            finally:
                otel_context.detach(token)
            deliveries.append((row, delivery))
        acknowledged: list[int] = []
        failure: BaseException | None = None
        for row, delivery in deliveries:
            try:
                await asyncio.wait_for(delivery, 30)
            except Exception as exc:
                if refused_for_good(exc):
                    refused.append((row, exc))
                    continue
                failure = exc
                publish_failures_total.labels(row.topic).inc()
                break
            acknowledged.append(row.id)
            published_total.labels(row.topic).inc()
        if acknowledged:
            self._being_marked.update(acknowledged)
            task = asyncio.ensure_future(self._mark_sent(acknowledged))
            self._marking.add(task)
            task.add_done_callback(self._marking.discard)
        if refused:
            await self._park_refused(refused)
        if failure is not None:
            raise failure
        return len(acknowledged) + len(refused)

    async def _park_refused(self, refused: Sequence[tuple[Any, BaseException]]) -> None:
        """Set aside rows Kafka will never take, so the ones behind them still go out.

        A parked row is an event consumers never see: it is logged as an error, counted, kept
        in the table with the reason (never pruned) and raises the OutboxRowsParked alert.
        """
        moment = now()
        await self.database.write(
            lambda c: c.execute(
                self._park,
                [
                    {"row_id": row.id, "parked_at": moment, "reason": repr(exc)[:1000]}
                    for row, exc in refused
                ],
            ),
            name="outbox_park",
        )
        for row, exc in refused:
            parked_total.labels(row.topic).inc()
            log.error(
                "outbox_row_parked",
                event_id=row.event_id,
                event_type=row.event_type,
                topic=row.topic,
                payload_bytes=len(row.payload),
                error=repr(exc)[:300],
            )

    async def _mark_sent(self, ids: Sequence[int]) -> None:
        try:
            await self.database.write(
                lambda c: c.execute(self._mark, {"ids": ids, "sent_at": now()}),
                name="outbox_mark_sent",
            )
        except Exception as exc:  # the rows stay unsent: the next reads publish them again
            log.warning("outbox_mark_failed", error=repr(exc), rows=len(ids))
        finally:
            self._being_marked.difference_update(ids)
