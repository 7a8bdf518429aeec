"""The consumer's process span: one per event it handles, none for an event it skips."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shop_chassis.telemetry import KafkaProcessTracing

TOPIC = "shop.orders.v1"


def deliver(sensor: KafkaProcessTracing, event_type: bytes) -> None:
    event = SimpleNamespace(
        message=SimpleNamespace(
            headers={"event-type": event_type, "event-id": b"e-1"}, key=b"order-1"
        )
    )
    tp = TP(TOPIC, 0)
    state = sensor.on_stream_event_in(tp, 7, SimpleNamespace(), event)
    sensor.on_stream_event_out(tp, 7, SimpleNamespace(), event, state)


def sensor_with(exporter: InMemorySpanExporter) -> KafkaProcessTracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return KafkaProcessTracing(
        {TOPIC: frozenset({"OrderCancelled"})}, tracer=provider.get_tracer("test")
    )


def test_an_event_the_consumer_handles_gets_a_process_span() -> None:
    exporter = InMemorySpanExporter()

    deliver(sensor_with(exporter), b"OrderCancelled")

    [span] = exporter.get_finished_spans()
    assert span.name == f"{TOPIC} process"
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == "e-1"


def test_an_event_the_consumer_skips_gets_no_span() -> None:
    exporter = InMemorySpanExporter()

    deliver(sensor_with(exporter), b"OrderConfirmed")

    assert exporter.get_finished_spans() == ()


def test_the_sensor_asks_for_its_tracer_once_not_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    get_tracer = trace.get_tracer

    def counting(name: str, *args: object, **kwargs: object) -> trace.Tracer:
        asked.append(name)
        return get_tracer(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(trace, "get_tracer", counting)
    sensor = KafkaProcessTracing({TOPIC: frozenset({"OrderCancelled"})})
    for _ in range(3):
        deliver(sensor, b"OrderCancelled")

    assert asked == ["faust"]
