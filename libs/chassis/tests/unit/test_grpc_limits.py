"""The limits every chassis server applies, met by a client on loopback: a request too large,
one call too many, a call without a deadline, and the deadline a handler sees for the calls
it makes itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.deadlines import bounded_timeout, time_remaining
from shop_chassis.grpc import GrpcServerService
from shop_chassis.settings import GrpcLimits, ServiceSettings
from shop_devstack.procs import free_port
from shop_devstack.testing import eventually

NOTIFIER = "shop.notifier.v1.NotifierService"


class Notifier(notifier_pb2_grpc.NotifierServiceServicer):
    """Customer "hold" waits until released; "slow" sleeps 2 s; any call notes the time it
    had left and what an outgoing call of 10 s would be given."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = 0
        self.seen_remaining: list[float | None] = []
        self.seen_outgoing: list[float] = []

    async def ListNotifications(
        self, request: notifier_pb2.ListNotificationsRequest, context: Any
    ) -> notifier_pb2.ListNotificationsResponse:
        self.seen_remaining.append(time_remaining())
        self.seen_outgoing.append(bounded_timeout(10.0))
        if request.customer_id == "hold":
            self.holding += 1
            await self.release.wait()
        if request.customer_id == "slow":
            await asyncio.sleep(2)
        return notifier_pb2.ListNotificationsResponse(next_page_token=request.customer_id)

    async def StreamNotifications(
        self, request: notifier_pb2.StreamNotificationsRequest, context: Any
    ) -> AsyncIterator[notifier_pb2.Notification]:
        await asyncio.sleep(0.5)  # longer than the default deadline in these tests
        yield notifier_pb2.Notification(customer_id=request.customer_id)


Serve = Callable[[GrpcLimits], Any]


@pytest.fixture
def serve() -> Callable[[GrpcLimits], Any]:
    @asynccontextmanager
    async def serving(
        limits: GrpcLimits,
    ) -> AsyncIterator[tuple[notifier_pb2_grpc.NotifierServiceStub, Notifier]]:
        address = f"127.0.0.1:{free_port()}"
        servicer = Notifier()

        def register(server: grpc.aio.Server) -> None:
            notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)

        server = GrpcServerService(
            address=address,
            service_names=[NOTIFIER],
            registrars=[register],
            grace_seconds=0,
            limits=limits,
        )
        await server.on_start()
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                yield notifier_pb2_grpc.NotifierServiceStub(channel), servicer
        finally:
            servicer.release.set()
            await server.on_stop()

    return serving


def listing(customer_id: str) -> notifier_pb2.ListNotificationsRequest:
    return notifier_pb2.ListNotificationsRequest(customer_id=customer_id)


def test_the_documented_defaults_bound_requests_to_1_mib_256_calls_and_30_seconds() -> None:
    limits = ServiceSettings.from_env("orders", environ={}).grpc_limits
    assert limits == GrpcLimits(
        max_request_bytes=1024 * 1024, max_concurrent_rpcs=256, default_deadline_seconds=30.0
    )


def test_the_limits_are_read_from_their_variables() -> None:
    environ = {
        "SHOP_GRPC_MAX_REQUEST_BYTES": "65536",
        "SHOP_GRPC_MAX_CONCURRENT_RPCS": "8",
        "SHOP_GRPC_DEFAULT_DEADLINE_SECONDS": "2.5",
    }
    limits = ServiceSettings.from_env("inventory", environ).grpc_limits
    assert limits == GrpcLimits(65536, 8, 2.5)


async def test_a_request_over_the_size_limit_is_resource_exhausted(serve: Serve) -> None:
    async with serve(GrpcLimits(max_request_bytes=4096)) as (stub, servicer):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListNotifications(listing("a" * 5000), timeout=5)
        served = await stub.ListNotifications(listing("a" * 4000), timeout=5)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (refused.value.details() or "")
    assert served.next_page_token == "a" * 4000
    assert len(servicer.seen_remaining) == 1  # the large one never reached the handler


async def test_a_call_beyond_the_concurrency_cap_is_refused_at_once_not_queued(
    serve: Serve,
) -> None:
    async with serve(GrpcLimits(max_concurrent_rpcs=2)) as (stub, servicer):
        held = [asyncio.ensure_future(stub.ListNotifications(listing("hold"), timeout=10))]
        held.append(asyncio.ensure_future(stub.ListNotifications(listing("hold"), timeout=10)))

        async def both_held() -> None:
            assert servicer.holding == 2

        await eventually(both_held, within=5)

        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListNotifications(listing("third"), timeout=10)
        refused_after = loop.time() - started

        servicer.release.set()
        answers = await asyncio.gather(*held)
        after = await stub.ListNotifications(listing("later"), timeout=5)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused_after < 1.0
    assert [a.next_page_token for a in answers] == ["hold", "hold"]
    assert after.next_page_token == "later"


async def test_a_call_without_a_deadline_is_cut_off_at_the_servers_default(serve: Serve) -> None:
    async with serve(GrpcLimits(default_deadline_seconds=0.3)) as (stub, servicer):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListNotifications(listing("slow"))  # no timeout: no deadline
        took = loop.time() - started

    assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert refused.value.details() == (
        "the call set no deadline and took longer than the server's default of 0.3 s"
    )
    assert 0.3 <= took < 1.5
    (remaining,) = servicer.seen_remaining
    assert remaining is not None and 0.2 < remaining <= 0.3


async def test_a_call_with_its_own_deadline_keeps_it_even_beyond_the_default(
    serve: Serve,
) -> None:
    async with serve(GrpcLimits(default_deadline_seconds=0.3)) as (stub, servicer):
        answer = await stub.ListNotifications(listing("slow"), timeout=5)

    assert answer.next_page_token == "slow"
    (remaining,) = servicer.seen_remaining
    assert remaining is not None and 4.0 < remaining <= 5.05  # grpc-timeout is rounded up


async def test_outgoing_calls_get_no_more_than_the_time_the_call_has_left(serve: Serve) -> None:
    async with serve(GrpcLimits()) as (stub, servicer):
        await stub.ListNotifications(listing("short"), timeout=0.8)
        await stub.ListNotifications(listing("long"))  # the 30 s default

    short, long = servicer.seen_outgoing
    # less than the 10 s the handler would have given; a hair over 0.8 s can come back, as
    # the deadline crosses the wire rounded up (grpc-timeout) and between clocks (one CI run
    # saw 0.80036)
    assert 0.5 < short <= 0.81
    assert long == 10.0
    assert bounded_timeout(10.0) == 10.0  # outside any call: the timeout as given


async def test_server_streams_are_exempt_from_the_default_deadline(serve: Serve) -> None:
    async with serve(GrpcLimits(default_deadline_seconds=0.1)) as (stub, _):
        streamed = await stub.StreamNotifications(
            notifier_pb2.StreamNotificationsRequest(customer_id="bob")
        ).read()

    assert isinstance(streamed, notifier_pb2.Notification)
    assert streamed.customer_id == "bob"
