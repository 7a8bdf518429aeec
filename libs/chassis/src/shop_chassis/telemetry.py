"""OpenTelemetry: one tracer provider per process, exporting OTLP to Jaeger.

The standard variables apply: OTEL_EXPORTER_OTLP_ENDPOINT (default here
http://127.0.0.1:4317), OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, and
OTEL_SDK_DISABLED=true to turn tracing off.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import grpc
import structlog
from faust.contrib.opentelemetry import INSTRUMENTATION_NAME, OpenTelemetrySensor
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shop_chassis.interceptors import (
    Context,
    HandlerWrappingInterceptor,
    ServerStream,
    Unary,
    status_code,
)

DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4317"

log = structlog.get_logger(__name__)


def exemplar() -> dict[str, str] | None:
    """The current trace id, to link a histogram sample to its trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


def tracing_enabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def _unless_set(variable: str, default: int) -> int | None:
    """`default`, or None (the SDK reads the variable) when the variable is set."""
    return None if os.environ.get(variable) else default


class Telemetry:
    """Owns the tracer provider; `shutdown()` flushes spans still in the batch queue."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.provider: TracerProvider | None = None

    def start(self) -> None:
        if not tracing_enabled():
            return
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_OTLP_ENDPOINT)
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: self.service}))
        self.provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, insecure=True),
                # Small batches often: encoding a batch holds the GIL, and 512 spans at a time
                # (the SDK's default) stalled the event loop enough to double GetOrder's p99.
                # The OTEL_BSP_* variables still win.
                schedule_delay_millis=_unless_set("OTEL_BSP_SCHEDULE_DELAY", 200),
                max_export_batch_size=_unless_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 128),
            )
        )
        trace.set_tracer_provider(self.provider)
        # Server spans come from the interceptor the gRPC server is built with; clients
        # (orders -> inventory) and Kafka producers are patched here, before any is made.
        GrpcAioInstrumentorClient().instrument()
        AIOKafkaInstrumentor().instrument()

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


# Server-side codes that mean the server failed (OpenTelemetry's gRPC conventions); a
# caller's mistake such as INVALID_ARGUMENT leaves the span's status unset.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class ServerTracingInterceptor(HandlerWrappingInterceptor):
    """A SERVER span per RPC, child of the caller's context from the metadata.

    The span (name `/<service>/<method>`, `rpc.system`, `rpc.service`, `rpc.method`,
    `rpc.grpc.status_code`) is what opentelemetry-instrumentation-grpc's aio interceptor
    records, minus peer address parsing and a wrapped servicer context per call: on a small
    call that interceptor cost about as much as the database read (README, "The data path").
    """

    def __init__(self) -> None:
        super().__init__()
        self.tracer = trace.get_tracer(__name__)

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        attributes = _rpc_attributes(method)

        async def unary(request: Any, context: Context) -> Any:
            with self._span(method, attributes, context) as span:
                error: BaseException | None = None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    _end(span, context, error)

        return unary

    def wrap_server_stream(self, method: str, behavior: ServerStream) -> ServerStream:
        attributes = _rpc_attributes(method)

        async def server_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            # The span is current only while the handler runs (each step of its iterator),
            # never across a `yield`: a stream the caller abandons is closed at its `yield` by
            # the generator's finalizer, in another context, where a context attached here
            # could not be detached.
            span = self._start_span(method, attributes, context)
            in_span = trace.set_span_in_context(span)
            responses = behavior(request, context).__aiter__()
            error: BaseException | None = None
            try:
                while True:
                    token = otel_context.attach(in_span)
                    try:
                        response = await anext(responses)
                    except StopAsyncIteration:
                        return
                    finally:
                        otel_context.detach(token)
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                _end(span, context, error)
                span.end()
                await _close(responses)

        return server_stream

    def _start_span(self, method: str, attributes: dict[str, str], context: Context) -> trace.Span:
        parent = propagate.extract(dict(context.invocation_metadata() or ()))
        return self.tracer.start_span(
            method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def _span(
        self, method: str, attributes: dict[str, str], context: Context
    ) -> AbstractContextManager[trace.Span]:
        """The span, current until the block ends, and then ended."""
        return trace.use_span(
            self._start_span(method, attributes, context),
            end_on_exit=True,
            record_exception=False,
            set_status_on_exception=False,
        )


async def _close(responses: AsyncIterator[Any]) -> None:
    """Closes the handler's iterator (an async generator) when the stream ends early."""
    aclose = getattr(responses, "aclose", None)
    if aclose is not None:
        await aclose()


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _end(span: trace.Span, context: Context, error: BaseException | None) -> None:
    code = status_code(context, error)
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(trace.StatusCode.ERROR, f"{code.name}: {context.details() or error!r}")


class KafkaProcessTracing(OpenTelemetrySensor):
    """faust.contrib.opentelemetry's CONSUMER "{topic} process" span, plus:

    - a span *link* to the producer's span besides being its child. Jaeger then shows
      one trace per request (child) while the messaging conventions' link is there for
      tools that follow links (see README, "One trace across Kafka");
    - `messaging.message.id` (our event-id header) and `messaging.kafka.offset`;
    - no span for an event the consumer skips (no handler for its type): on a shared topic
      most events are someone else's, and a span each would cost more than skipping them.
    """

    def __init__(self, handled_event_types: Mapping[str, frozenset[str]], **kwargs: Any) -> None:
        # Faust's sensor asks `trace.get_tracer()` for its tracer on every event (≈ 8 µs, the
        # largest piece of this sensor in the notifier's profile). Asked once here, before or
        # after Telemetry.start(): a tracer got before the provider is set follows it once set.
        kwargs.setdefault("tracer", trace.get_tracer(INSTRUMENTATION_NAME))
        super().__init__(**kwargs)
        self.handled_event_types = handled_event_types

    def _span_attributes(self, stream: Any, event: Any, tp: Any, offset: int) -> dict[str, Any]:
        attributes: dict[str, Any] = super()._span_attributes(stream, event, tp, offset)
        attributes["messaging.kafka.offset"] = offset
        # Kafka headers arrive as a dict or as (key, value) pairs.
        event_id = dict(getattr(event.message, "headers", None) or {}).get("event-id")
        if isinstance(event_id, bytes):
            attributes["messaging.message.id"] = event_id.decode(errors="replace")
        return attributes

    def on_stream_event_in(
        self, tp: Any, offset: int, stream: Any, event: Any
    ) -> dict[str, Any] | None:
        try:
            headers = getattr(event.message, "headers", None)
            handled = self.handled_event_types.get(tp.topic)
            if (
                handled is not None
                and dict(headers or {}).get("event-type", b"").decode(errors="replace")
                not in handled
            ):
                return None
            parent = propagate.extract(headers, getter=self._getter)
            producer = trace.get_current_span(parent).get_span_context()
            span = self.tracer.start_span(
                f"{tp.topic} process",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes=self._span_attributes(stream, event, tp, offset),
                links=[trace.Link(producer)] if producer.is_valid else None,
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        except Exception:  # telemetry must never stop an event from being processed
            log.debug("process_span_failed", exc_info=True)
            return None
        return {"span": span, "token": token}
