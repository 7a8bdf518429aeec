"""The gRPC server every service runs: grpc.aio, health checking, reflection, interceptors.

Every server is bounded (`GrpcLimits`: request size, calls in progress, a default deadline;
README, "Limits and deadlines"). It is a mode.Service so the Faust app can start it after
its producer and consumer and, on SIGTERM/SIGINT, stop it before anything else: health flips
to NOT_SERVING, server streams are told to end, new calls are refused, in-flight calls get
`grace` seconds to finish, and only then do Faust's agents, the outbox relay, the database
and Faust's clients stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import grpc
import structlog
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from mode import Service

from shop_chassis.deadlines import DeadlineInterceptor
from shop_chassis.errors import ErrorMappingInterceptor, RequestDecodingInterceptor
from shop_chassis.grpc_metrics import ServerMetricsInterceptor
from shop_chassis.settings import GrpcLimits
from shop_chassis.telemetry import ServerTracingInterceptor
from shop_chassis.tls import TlsFiles

log = structlog.get_logger(__name__)

#: Adds one servicer to a server, e.g. ``lambda s: add_OrderServiceServicer_to_server(x, s)``.
Registrar = Callable[[grpc.aio.Server], None]


class _MethodAwarePool:
    """The default descriptor pool, able to find a file by a *method*'s full name.

    ghz asks reflection for `shop.orders.v1.OrderService.GetOrder`; protobuf's upb pool only
    resolves messages, enums, services and the like, so reflection would answer "Symbol not
    found". Here a method resolves to its service's file; everything else is delegated.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            service = self._pool.FindServiceByName(service_name)  # KeyError: not found
            if method not in service.methods_by_name:
                raise
            return service.file


class HealthServicer(health.aio.HealthServicer):
    """grpc's health servicer plus `List` (every service's status), which grpcio-health-checking
    declares but does not implement: a call of it raised NotImplementedError, logged with its
    traceback each time."""

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # The statuses as the base class keeps them (it has no accessor); the message types
        # are newer than their type stubs.
        statuses: dict[str, Any] = vars(self)["_server_status"]
        messages: Any = health_pb2
        return messages.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in statuses.items()
            }
        )


class GrpcServerService(Service):
    """Serves `registrars` on `address` until stopped; over mutual TLS when given `tls`."""

    def __init__(
        self,
        *,
        address: str,
        service_names: Sequence[str],
        registrars: Sequence[Registrar],
        grace_seconds: float,
        limits: GrpcLimits | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        on_stopping: Sequence[Callable[[], None]] = (),
        tls: TlsFiles | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.address = address
        self.service_names = list(service_names)
        self.registrars = list(registrars)
        self.grace_seconds = grace_seconds
        self.limits = limits or GrpcLimits()
        self.interceptors = list(interceptors)
        self.on_stopping = list(on_stopping)
        self.tls = tls
        self.server: grpc.aio.Server | None = None
        self.health = HealthServicer()

    async def on_start(self) -> None:
        server = grpc.aio.server(
            # Outermost first: the span is current while metrics record (exemplars); requests
            # are decoded inside both, so an undecodable one is traced and counted, and
            # errors are mapped innermost so both see the final status. The deadline bounds
            # everything the handler does, the service's own interceptors included.
            interceptors=[
                ServerTracingInterceptor(),
                ServerMetricsInterceptor(),
                RequestDecodingInterceptor(),
                DeadlineInterceptor(self.limits.default_deadline_seconds),
                *self.interceptors,
                ErrorMappingInterceptor(),
            ],
            # grpc refuses these two with RESOURCE_EXHAUSTED before any interceptor runs.
            maximum_concurrent_rpcs=self.limits.max_concurrent_rpcs,
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", self.limits.max_request_bytes),
            ],
        )
        for register in self.registrars:
            register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME],
            server,
            pool=cast(descriptor_pool.DescriptorPool, _MethodAwarePool(descriptor_pool.Default())),
        )
        # Adding a port raises RuntimeError when it is taken; say which one.
        try:
            if self.tls is None:
                server.add_insecure_port(self.address)
            else:
                server.add_secure_port(self.address, self.tls.server_credentials())
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen on {self.address} (port in use?)") from exc
        await server.start()
        self.server = server
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "grpc_server_started",
            address=self.address,
            services=self.service_names,
            tls="mutual" if self.tls else "off",
            max_request_bytes=self.limits.max_request_bytes,
            max_concurrent_rpcs=self.limits.max_concurrent_rpcs,
            default_deadline_seconds=self.limits.default_deadline_seconds,
        )

    async def on_stop(self) -> None:
        if self.server is None:
            return
        log.info("grpc_server_stopping", grace_seconds=self.grace_seconds)
        await self.health.enter_graceful_shutdown()
        for callback in self.on_stopping:  # e.g. end server streams, which never finish alone
            callback()
        await self.server.stop(self.grace_seconds)
        self.server = None
        log.info("grpc_server_stopped")
