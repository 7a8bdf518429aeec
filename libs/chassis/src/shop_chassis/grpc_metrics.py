"""gRPC RED metrics under the names dashboards already use (go-grpc-prometheus,
py-grpc-prometheus): grpc_server_started_total, grpc_server_handled_total,
grpc_server_handling_seconds, and the grpc_client_* twins.

Written for grpc.aio here because py-grpc-prometheus only intercepts the threaded server.
Label children are created once per method and code, not per call; histogram samples
carry the current trace id as an OpenMetrics exemplar.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from shop_chassis.interceptors import (
    Context,
    HandlerWrappingInterceptor,
    ServerStream,
    Unary,
    status_code,
)
from shop_chassis.telemetry import exemplar

LABELS = ["grpc_type", "grpc_service", "grpc_method"]
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

server_started = Counter("grpc_server_started_total", "RPCs started on the server.", LABELS)
server_handled = Counter(
    "grpc_server_handled_total", "RPCs completed on the server.", [*LABELS, "grpc_code"]
)
server_handling = Histogram(
    "grpc_server_handling_seconds", "Time to handle an RPC on the server.", LABELS, buckets=BUCKETS
)
client_started = Counter("grpc_client_started_total", "RPCs started by the client.", LABELS)
client_handled = Counter(
    "grpc_client_handled_total", "RPCs completed by the client.", [*LABELS, "grpc_code"]
)
client_handling = Histogram(
    "grpc_client_handling_seconds",
    "Time from call to answer, seen by the client.",
    LABELS,
    buckets=BUCKETS,
)


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


class _Series:
    """The label children of one method, so a call only looks up its code."""

    def __init__(
        self,
        started: Counter,
        handled: Counter,
        handling: Histogram,
        grpc_type: str,
        full_method: str,
    ) -> None:
        service, method = _split(full_method)
        labels = (grpc_type, service, method)
        self.started = started.labels(*labels)
        self.handling = handling.labels(*labels)
        self._handled = handled
        self._labels = labels

    @cache  # noqa: B019 (one entry per status code; the series live as long as the process)
    def handled(self, code: str) -> Any:
        return self._handled.labels(*self._labels, code)

    def done(self, code: grpc.StatusCode, started_at: float) -> None:
        self.handled(code.name).inc()
        self.handling.observe(time.perf_counter() - started_at, exemplar())


@cache
def _server_series(grpc_type: str, full_method: str) -> _Series:
    return _Series(server_started, server_handled, server_handling, grpc_type, full_method)


@cache
def _client_series(grpc_type: str, full_method: str) -> _Series:
    return _Series(client_started, client_handled, client_handling, grpc_type, full_method)


class ServerMetricsInterceptor(HandlerWrappingInterceptor):
    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        series = _server_series("unary", method)

        async def unary(request: Any, context: Context) -> Any:
            series.started.inc()
            started_at = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                series.done(status_code(context, error), started_at)

        return unary

    def wrap_server_stream(self, method: str, behavior: ServerStream) -> ServerStream:
        series = _server_series("server_stream", method)

        async def server_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            series.started.inc()
            started_at = time.perf_counter()
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                series.done(status_code(context, error), started_at)

        return server_stream


class ClientMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = client_call_details.method
        full_method = method.decode() if isinstance(method, bytes) else method
        series = _client_series("unary", full_method)
        series.started.inc()
        started_at = time.perf_counter()
        try:
            call = await continuation(client_call_details, request)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call  # the caller awaits the same call and sees the same outcome
        except asyncio.CancelledError:  # the caller gave up (its task, or call.cancel())
            series.done(grpc.StatusCode.CANCELLED, started_at)
            raise
        series.done(await call.code(), started_at)
        return call
