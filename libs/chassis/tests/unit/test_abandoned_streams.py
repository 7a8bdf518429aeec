"""A server stream the caller abandons: grpc.aio leaves it suspended at a `yield`, and the
async generator's finalizer closes it later (GeneratorExit), in another context. It is
CANCELLED, not UNKNOWN, and its span ends without OpenTelemetry failing to detach a context."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shop_chassis.interceptors import status_code
from shop_chassis.telemetry import ServerTracingInterceptor

METHOD = "/shop.notifier.v1.NotifierService/StreamNotifications"


class StreamContext:
    """The two things the interceptor asks a servicer context on a stream."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> None:  # grpc.aio sets none when the caller goes away
        return None

    def details(self) -> None:
        return None


def test_a_stream_closed_at_a_yield_ended_cancelled() -> None:
    assert status_code(StreamContext(), GeneratorExit()) is grpc.StatusCode.CANCELLED  # type: ignore[arg-type]


async def test_an_abandoned_stream_ends_its_span_cancelled_and_closes_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    interceptor = ServerTracingInterceptor()
    interceptor.tracer = provider.get_tracer("test")
    closed = asyncio.Event()

    async def notifications(request: Any, context: Any) -> AsyncIterator[str]:
        try:
            for n in range(3):
                yield f"notification {n}"
        finally:
            closed.set()

    stream = interceptor.wrap_server_stream(METHOD, notifications)(
        SimpleNamespace(), StreamContext()
    )
    assert await anext(stream) == "notification 0"  # type: ignore[call-overload]

    # The finalizer's aclose runs in a task of its own, in another context.
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        await asyncio.create_task(stream.aclose(), context=contextvars.Context())  # type: ignore[attr-defined]

    assert closed.is_set()
    [span] = exporter.get_finished_spans()
    assert span.name == METHOD
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert not span.status.description  # not marked as a server error
    assert "Failed to detach context" not in caplog.text


async def test_a_stream_read_to_its_end_ends_its_span_ok() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    interceptor = ServerTracingInterceptor()
    interceptor.tracer = provider.get_tracer("test")

    async def two(request: Any, context: Any) -> AsyncIterator[int]:
        yield 1
        yield 2

    stream = interceptor.wrap_server_stream(METHOD, two)(SimpleNamespace(), StreamContext())
    assert [r async for r in stream] == [1, 2]  # type: ignore[attr-defined]
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
