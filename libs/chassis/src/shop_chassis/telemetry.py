"""OpenTelemetry: one tracer provider per process, exporting OTLP to Jaeger.

The standard variables apply: OTEL_EXPORTER_OTLP_ENDPOINT (default here
http://127.0.0.1:4317), OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, and
OTEL_SDK_DISABLED=true to turn tracing off.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4317"


class Telemetry:
    """Owns the tracer provider; `shutdown()` flushes spans still in the batch queue."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.provider: TracerProvider | None = None

    def start(self) -> None:
        if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_OTLP_ENDPOINT)
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: self.service}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
        )
        trace.set_tracer_provider(self.provider)
        # Server spans come from the interceptor the gRPC server is built with; clients
        # (orders -> inventory) and Kafka producers are patched here, before any is made.
        GrpcAioInstrumentorClient().instrument()
        AIOKafkaInstrumentor().instrument()

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
