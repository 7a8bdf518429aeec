"""What an agent does with one event, without Kafka: retry, wait out outages, dead-letter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shop.events.v1 import events_pb2
from shop_chassis.db import DatabaseUnavailable
from shop_chassis.events import Delivery, EventProcessor, Handler, PoisonEvent


@dataclass
class Message:
    value: bytes
    key: bytes = b"order-1"
    topic: str = "shop.orders.v1"
    partition: int = 0
    offset: int = 7


@dataclass
class Event:
    message: Message
    headers: dict[str, bytes] = field(default_factory=lambda: {"event-type": b"OrderCancelled"})


def cancelled() -> Event:
    payload = events_pb2.OrderCancelled(event_id="e-1", order_id="o-1").SerializeToString()
    return Event(Message(payload))


class Script:
    """A handler that raises the given errors in turn, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, event: Any, delivery: Delivery) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


class DeadLetters:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[str] = []
        self.failures = failures

    async def __call__(self, event: Any, reason: str, error: BaseException) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.sent.append(reason)


def processor(script: Script, dead_letters: DeadLetters) -> EventProcessor:
    handlers = {"OrderCancelled": Handler(events_pb2.OrderCancelled, script)}
    return EventProcessor(
        "shop.orders.v1", handlers, dead_letters, attempts=3, retry_delay=0.001, max_backoff=0.01
    )


def db_down() -> DatabaseUnavailable:
    return DatabaseUnavailable("the database is unavailable: database is locked")


async def test_a_handled_event_is_ok() -> None:
    script, dead = Script(), DeadLetters()
    assert await processor(script, dead).process(cancelled()) == "ok"
    assert (script.calls, dead.sent) == (1, [])


async def test_an_event_without_a_handler_is_skipped() -> None:
    event = cancelled()
    event.headers = {"event-type": b"SomethingElse"}
    script, dead = Script(), DeadLetters()
    assert await processor(script, dead).process(event) == "skipped"
    assert script.calls == 0


async def test_an_event_without_an_event_type_is_dead_lettered_not_skipped() -> None:
    event = cancelled()
    event.headers = {"event-id": b"e-1"}
    script, dead = Script(), DeadLetters()
    assert await processor(script, dead).process(event) == "dead_lettered"
    assert (script.calls, dead.sent) == (0, ["no_event_type"])


async def test_an_undecodable_event_is_dead_lettered_without_calling_the_handler() -> None:
    script, dead = Script(), DeadLetters()
    assert await processor(script, dead).process(Event(Message(b"\xff\xff"))) == "dead_lettered"
    assert (script.calls, dead.sent) == (0, ["undecodable"])


async def test_a_rejected_event_is_dead_lettered_at_once() -> None:
    script, dead = Script(PoisonEvent("no order id")), DeadLetters()
    assert await processor(script, dead).process(cancelled()) == "dead_lettered"
    assert (script.calls, dead.sent) == (1, ["rejected"])


async def test_a_failing_handler_is_retried_then_dead_lettered() -> None:
    script, dead = Script(*[ValueError("bug")] * 5), DeadLetters()
    assert await processor(script, dead).process(cancelled()) == "dead_lettered"
    assert (script.calls, dead.sent) == (3, ["handler_failed"])


async def test_an_outage_is_waited_out_however_long_not_dead_lettered() -> None:
    script, dead = Script(*[db_down()] * 12), DeadLetters()  # four times `attempts`
    assert await processor(script, dead).process(cancelled()) == "ok"
    assert (script.calls, dead.sent) == (13, [])


async def test_a_timeout_outside_the_database_is_retried_a_bounded_number_of_times() -> None:
    script, dead = Script(*[TimeoutError("a peer is slow")] * 5), DeadLetters()
    assert await processor(script, dead).process(cancelled()) == "dead_lettered"
    assert (script.calls, dead.sent) == (3, ["handler_failed"])


async def test_a_dead_letter_is_sent_even_if_the_broker_is_away_for_a_while() -> None:
    script, dead = Script(PoisonEvent("bad")), DeadLetters(failures=2)
    assert await processor(script, dead).process(cancelled()) == "dead_lettered"
    assert dead.sent == ["rejected"]
