"""The client side of the RED metrics, on a real call to a server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.grpc_metrics import ClientMetricsInterceptor
from shop_devstack.procs import free_port

LABELS = {
    "grpc_type": "unary",
    "grpc_service": "shop.notifier.v1.NotifierService",
    "grpc_method": "ListNotifications",
}


class SlowNotifier(notifier_pb2_grpc.NotifierServiceServicer):
    """Answers once `release` is set; `called` tells a test the call has arrived."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.release = asyncio.Event()

    async def ListNotifications(
        self, request: notifier_pb2.ListNotificationsRequest, context: Any
    ) -> notifier_pb2.ListNotificationsResponse:
        self.called.set()
        await self.release.wait()
        return notifier_pb2.ListNotificationsResponse()


@pytest.fixture
async def notifier() -> AsyncIterator[tuple[SlowNotifier, notifier_pb2_grpc.NotifierServiceStub]]:
    servicer = SlowNotifier()
    server = grpc.aio.server()
    notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            address, interceptors=[ClientMetricsInterceptor()]
        ) as channel:
            yield servicer, notifier_pb2_grpc.NotifierServiceStub(channel)
    finally:
        await server.stop(0)


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {**LABELS, **labels}) or 0


@pytest.mark.parametrize("how", ["its task is cancelled", "call.cancel()"])
async def test_a_call_the_caller_cancels_is_counted_as_handled_with_code_cancelled(
    notifier: tuple[SlowNotifier, notifier_pb2_grpc.NotifierServiceStub], how: str
) -> None:
    servicer, stub = notifier
    started = counted("grpc_client_started_total")
    cancelled = counted("grpc_client_handled_total", grpc_code="CANCELLED")

    call = stub.ListNotifications(notifier_pb2.ListNotificationsRequest(), timeout=10)
    waiting = asyncio.ensure_future(call)
    await asyncio.wait_for(servicer.called.wait(), 5)
    if how == "call.cancel()":
        call.cancel()
    else:
        waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert counted("grpc_client_started_total") == started + 1
    assert counted("grpc_client_handled_total", grpc_code="CANCELLED") == cancelled + 1


async def test_an_answered_call_is_counted_with_its_code(
    notifier: tuple[SlowNotifier, notifier_pb2_grpc.NotifierServiceStub],
) -> None:
    servicer, stub = notifier
    ok = counted("grpc_client_handled_total", grpc_code="OK")
    servicer.release.set()

    await stub.ListNotifications(notifier_pb2.ListNotificationsRequest(), timeout=10)

    assert counted("grpc_client_handled_total", grpc_code="OK") == ok + 1
