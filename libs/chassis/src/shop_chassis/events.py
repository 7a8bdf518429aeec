"""Consuming protobuf events from Kafka with Faust: decode, handle, retry, dead-letter.

`subscribe` turns a map of event type -> handler into a Faust agent. The "event-type"
header names the protobuf message; types with no handler are skipped (a shared topic carries
other consumers' types, and a newer producer's), while an event without the header, which no
producer of ours writes, is dead-lettered. While the database is
unavailable (unreachable, or locked past its timeout) a handler is retried with backoff for
as long as that lasts: an outage delays the partition, it never dead-letters its events.
Any other failure is retried a bounded number of times; an event that cannot be decoded, or
still fails, goes to `<topic>.dlq` with the error and its origin in headers, and the agent
goes on with the next event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
import structlog
from faust.types import EventT, TopicT
from google.protobuf.message import DecodeError, Message
from prometheus_client import Counter, Histogram
from sqlalchemy import Column, DateTime, Index, MetaData, String, Table
from sqlalchemy.engine import Connection

from shop_chassis.db import DatabaseUnavailable, insert_ignoring_conflicts
from shop_chassis.kafka import DEAD_LETTER_MAX_BYTES, ShopApp, declare_topic
from shop_chassis.outbox import now
from shop_chassis.settings import ServiceSettings

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=Message)

dead_lettered_total = Counter(
    "shop_kafka_dead_lettered_total", "Events sent to a dead-letter topic", ["topic", "reason"]
)
processed_total = Counter(
    "shop_kafka_events_processed_total",
    "Events handled, by outcome",
    ["topic", "event_type", "outcome"],
)
processing_seconds = Histogram(
    "shop_kafka_event_processing_seconds", "Time to handle one event", ["topic", "event_type"]
)


TRACE_CONTEXT_HEADERS = frozenset({"traceparent", "tracestate"})


class PoisonEvent(Exception):
    """The event can never be handled (e.g. a required field is missing): dead-letter it now."""


@dataclass(frozen=True)
class Delivery:
    """Where an event came from."""

    topic: str
    partition: int
    offset: int
    key: str
    event_type: str
    headers: Mapping[str, bytes]


@dataclass(frozen=True)
class Handler(Generic[M]):
    message_type: type[M]
    handle: Callable[[M, Delivery], Awaitable[None]]


DeadLetter = Callable[[EventT[Any], str, BaseException], Awaitable[None]]


class EventProcessor:
    """What the agent does with one event; kept apart from Faust so it can be unit-tested.

    - no handler for the event type: skipped;
    - no event type at all, undecodable, or the handler raises PoisonEvent: dead-lettered
      at once;
    - the database is unavailable (`DatabaseUnavailable`): retried with backoff for as long
      as it takes — the partition waits, so order is kept and nothing is dead-lettered
      because of an outage;
    - any other error, a timeout or refused connection elsewhere included: retried
      `attempts` times, then dead-lettered.
    """

    def __init__(
        self,
        topic_name: str,
        handlers: Mapping[str, Handler[Any]],
        dead_letter: DeadLetter,
        *,
        attempts: int = 3,
        retry_delay: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self.topic_name = topic_name
        self.handlers = handlers
        self.dead_letter = dead_letter
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.max_backoff = max_backoff

    async def process(self, event: EventT[Any]) -> str:
        """Handle `event`; returns the outcome (ok, skipped or dead_lettered)."""
        message = event.message
        headers = {k: v for k, v in (event.headers or {}).items() if isinstance(v, bytes)}
        if "event-type" not in headers:
            return await self._dead_letter(
                event, "missing", "no_event_type", PoisonEvent("no event-type header")
            )
        event_type = headers["event-type"].decode(errors="replace")
        handler = self.handlers.get(event_type)
        if handler is None:
            # The header is whatever a producer wrote: don't let it mint label values.
            processed_total.labels(self.topic_name, "unhandled", "skipped").inc()
            return "skipped"
        try:
            decoded = handler.message_type.FromString(message.value or b"")
        except DecodeError as exc:
            return await self._dead_letter(event, event_type, "undecodable", exc)
        key = message.key.decode(errors="replace") if isinstance(message.key, bytes) else ""
        delivery = Delivery(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=key,
            event_type=event_type,
            headers=headers,
        )
        failures = 0
        while True:
            try:
                with processing_seconds.labels(self.topic_name, event_type).time():
                    await handler.handle(decoded, delivery)
            except PoisonEvent as exc:
                return await self._dead_letter(event, event_type, "rejected", exc)
            except DatabaseUnavailable as exc:
                failures += 1
                delay = min(self.retry_delay * 2**failures, self.max_backoff)
                log.warning("event_handling_waits", error=repr(exc), retry_in_seconds=delay)
                await asyncio.sleep(delay)
            except Exception as exc:
                failures += 1
                if failures >= self.attempts:
                    return await self._dead_letter(event, event_type, "handler_failed", exc)
                log.warning("event_handling_retry", attempt=failures, error=repr(exc))
                await asyncio.sleep(self.retry_delay * failures)
            else:
                processed_total.labels(self.topic_name, event_type, "ok").inc()
                return "ok"

    async def _dead_letter(
        self, event: EventT[Any], event_type: str, reason: str, error: BaseException
    ) -> str:
        failures = 0
        while True:  # a dead letter is never dropped: wait for the broker if need be
            try:
                await self.dead_letter(event, reason, error)
                break
            except Exception as exc:
                failures += 1
                delay = min(self.retry_delay * 2**failures, self.max_backoff)
                log.warning("dead_letter_send_failed", error=repr(exc), retry_in_seconds=delay)
                await asyncio.sleep(delay)
        processed_total.labels(self.topic_name, event_type, "dead_lettered").inc()
        dead_lettered_total.labels(self.topic_name, reason).inc()
        message = event.message
        log.error(
            "event_dead_lettered",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reason,
            error=repr(error),
        )
        return "dead_lettered"


def subscribe(
    app: ShopApp,
    settings: ServiceSettings,
    topic: TopicT,
    handlers: Mapping[str, Handler[Any]],
) -> TopicT:
    """Create the agent consuming `topic`; returns its dead-letter topic (to declare)."""
    topic_name = topic.get_topic_name()
    app.handled_event_types[topic_name] = frozenset(handlers)
    dead_letters = declare_topic(
        app, settings, f"{topic_name}.dlq", config={"max.message.bytes": DEAD_LETTER_MAX_BYTES}
    )

    async def dead_letter(event: EventT[Any], reason: str, error: BaseException) -> None:
        message = event.message
        # The send below is traced and injects the current context; a copied traceparent
        # would make it appear twice.
        headers = {k: v for k, v in (event.headers or {}).items() if k not in TRACE_CONTEXT_HEADERS}
        headers.update(
            {
                "dlq-reason": reason.encode(),
                "dlq-error": repr(error)[:1000].encode(),
                "dlq-origin-topic": message.topic.encode(),
                "dlq-origin-partition": str(message.partition).encode(),
                "dlq-origin-offset": str(message.offset).encode(),
                "dlq-consumer-group": app.conf.id.encode(),
            }
        )
        await (await dead_letters.send(key=message.key, value=message.value, headers=headers))

    processor = EventProcessor(topic_name, handlers, dead_letter)

    async def consume(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await processor.process(event)

    app.agent(topic, name=f"{app.conf.id}.{topic_name}")(consume)
    return dead_letters


def processed_events_table(metadata: MetaData) -> Table:
    """Event ids already handled by this service: the dedupe record for redeliveries."""
    return Table(
        "processed_events",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        # The pruner deletes the oldest records (shop_chassis.retention).
        Index("ix_processed_events_processed_at", "processed_at"),
    )


def first_delivery(connection: Connection, processed: Table, event_id: str) -> bool:
    """Record `event_id` in the caller's transaction; False if it was handled before.

    One statement: a redelivered event hits the primary key and inserts nothing, and no
    error aborts the transaction (as one would on PostgreSQL).
    """
    recorded = connection.execute(
        insert_ignoring_conflicts(processed),
        {"event_id": event_id, "processed_at": now()},
    )
    return recorded.rowcount == 1
