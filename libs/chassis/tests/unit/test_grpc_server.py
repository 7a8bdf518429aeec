"""The chassis's gRPC server on loopback, as a client meets it: requests that are not the
method's message are refused INVALID_ARGUMENT, named and counted; the rest are served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.db import DatabaseUnavailable
from shop_chassis.errors import InvalidArgument
from shop_chassis.grpc import GrpcServerService
from shop_devstack.procs import free_port
from shop_devstack.testing import error_details, eventually

NOTIFIER = "shop.notifier.v1.NotifierService"

UNDECODABLE = {
    "a varint that never ends": b"\xff\xff\xff\xff",
    "a field cut short": b"\x0a\x05ab",
    "a string that is not UTF-8": b"\x0a\x02\xff\xfe",
}


class Notifier(notifier_pb2_grpc.NotifierServiceServicer):
    """Answers with what it was asked, so a test sees the request arrived decoded; for
    customer "db-down" its database is out of reach, "many-problems" has 500 of them, and
    "bug" meets a bug in the servicer."""

    async def ListNotifications(
        self, request: notifier_pb2.ListNotificationsRequest, context: Any
    ) -> notifier_pb2.ListNotificationsResponse:
        if request.customer_id == "db-down":
            raise DatabaseUnavailable("the database is unavailable: ConnectionRefusedError()")
        if request.customer_id == "bug":
            raise KeyError("secret-internal-detail")
        if request.customer_id == "many-problems":
            raise InvalidArgument({f"items[{i}].sku": "é" * 1000 for i in range(500)})
        return notifier_pb2.ListNotificationsResponse(next_page_token=request.customer_id)

    async def StreamNotifications(
        self, request: notifier_pb2.StreamNotificationsRequest, context: Any
    ) -> AsyncIterator[notifier_pb2.Notification]:
        yield notifier_pb2.Notification(customer_id=request.customer_id)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    address = f"127.0.0.1:{free_port()}"

    def register(server: grpc.aio.Server) -> None:
        notifier_pb2_grpc.add_NotifierServiceServicer_to_server(Notifier(), server)

    server = GrpcServerService(
        address=address, service_names=[NOTIFIER], registrars=[register], grace_seconds=0
    )
    await server.on_start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield channel
    finally:
        await server.on_stop()


def raw_unary(channel: grpc.aio.Channel, method: str) -> Any:
    """A caller that sends bytes as they are (no serializer) and returns the reply's bytes."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def handled(method: str, code: str) -> float:
    labels = {
        "grpc_type": "unary",
        "grpc_service": NOTIFIER,
        "grpc_method": method,
        "grpc_code": code,
    }
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0


@pytest.mark.parametrize("body", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_bytes_that_are_not_the_request_message_are_invalid_argument_naming_its_type(
    channel: grpc.aio.Channel, body: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw_unary(channel, f"/{NOTIFIER}/ListNotifications")(body, timeout=5)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        "request is not a valid shop.notifier.v1.ListNotificationsRequest"
    )
    (bad_request,) = error_details(refused.value)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [v.description for v in bad_request.field_violations] == [
        f"{len(body)} bytes that do not parse as a shop.notifier.v1.ListNotificationsRequest"
    ]


async def test_an_undecodable_request_is_counted_as_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    before = handled("ListNotifications", "INVALID_ARGUMENT")

    with pytest.raises(grpc.aio.AioRpcError):
        await raw_unary(channel, f"/{NOTIFIER}/ListNotifications")(b"\xff\xff", timeout=5)

    async def counted() -> None:  # the server counts once it has sent the status
        assert handled("ListNotifications", "INVALID_ARGUMENT") == before + 1
        assert handled("ListNotifications", "UNKNOWN") == 0

    await eventually(counted, within=5)


async def test_a_server_stream_refuses_an_undecodable_request_before_its_first_message(
    channel: grpc.aio.Channel,
) -> None:
    stream = channel.unary_stream(
        f"/{NOTIFIER}/StreamNotifications", request_serializer=None, response_deserializer=None
    )(b"\xff\xff", timeout=5)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.read()

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        "request is not a valid shop.notifier.v1.StreamNotificationsRequest"
    )


@pytest.mark.parametrize("method", ["Check", "Watch"])
async def test_the_health_service_refuses_undecodable_requests_too(
    channel: grpc.aio.Channel, method: str
) -> None:
    call = channel.unary_stream if method == "Watch" else channel.unary_unary
    pending = call(
        f"/grpc.health.v1.Health/{method}", request_serializer=None, response_deserializer=None
    )(b"\xff\xff", timeout=5)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await (pending.read() if method == "Watch" else pending)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "request is not a valid grpc.health.v1.HealthCheckRequest"


async def test_valid_requests_still_reach_the_servicer_decoded(channel: grpc.aio.Channel) -> None:
    stub = notifier_pb2_grpc.NotifierServiceStub(channel)

    listed = await stub.ListNotifications(
        notifier_pb2.ListNotificationsRequest(customer_id="alice"), timeout=5
    )
    streamed = await stub.StreamNotifications(
        notifier_pb2.StreamNotificationsRequest(customer_id="bob"), timeout=5
    ).read()
    health = await channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )(health_pb2.HealthCheckRequest(service=NOTIFIER), timeout=5)

    assert listed.next_page_token == "alice"
    assert streamed.customer_id == "bob"
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_database_out_of_reach_is_unavailable_with_a_retry_delay(
    channel: grpc.aio.Channel,
) -> None:
    stub = notifier_pb2_grpc.NotifierServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListNotifications(
            notifier_pb2.ListNotificationsRequest(customer_id="db-down"), timeout=5
        )

    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == "the database is unavailable; retry later"
    (retry,) = error_details(refused.value)
    assert isinstance(retry, error_details_pb2.RetryInfo)


async def test_a_bug_in_a_handler_is_internal_not_unknown_and_keeps_its_details_inside(
    channel: grpc.aio.Channel,
) -> None:
    stub = notifier_pb2_grpc.NotifierServiceStub(channel)
    before = handled("ListNotifications", "INTERNAL")

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.ListNotifications(
            notifier_pb2.ListNotificationsRequest(customer_id="bug"), timeout=5
        )

    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in (failed.value.details() or "")

    async def counted() -> None:  # the server counts once it has sent the status
        assert handled("ListNotifications", "INTERNAL") == before + 1

    await eventually(counted, within=5)


async def test_health_lists_every_service_as_serving(channel: grpc.aio.Channel) -> None:
    listed = await channel.unary_unary(
        "/grpc.health.v1.Health/List",
        request_serializer=health_pb2.HealthListRequest.SerializeToString,
        response_deserializer=health_pb2.HealthListResponse.FromString,
    )(health_pb2.HealthListRequest(), timeout=5)

    assert {name: s.status for name, s in listed.statuses.items()} == {
        "": health_pb2.HealthCheckResponse.SERVING,
        NOTIFIER: health_pb2.HealthCheckResponse.SERVING,
    }


async def test_a_request_with_hundreds_of_problems_gets_an_error_the_client_can_read(
    channel: grpc.aio.Channel,
) -> None:
    stub = notifier_pb2_grpc.NotifierServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListNotifications(
            notifier_pb2.ListNotificationsRequest(customer_id="many-problems"), timeout=5
        )

    # Not RESOURCE_EXHAUSTED from the client's own limit on the size of trailers.
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad_request,) = error_details(refused.value)
    assert len(bad_request.field_violations) == 11
