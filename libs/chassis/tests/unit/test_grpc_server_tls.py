"""The chassis's gRPC server with SHOP_TLS on, as clients meet it on loopback: only a client
showing a certificate from the shop's CA is served, and a client checks the server too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shop_chassis.grpc import GrpcServerService
from shop_chassis.tls import TlsFiles, files_in
from shop_devstack.certs import ensure_certs
from shop_devstack.procs import free_port
from shop_devstack.stack import grpc_serving, open_channel

SERVICES = ["inventory", "notifier"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    ensure_certs(folder, SERVICES)
    return folder


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA, with certificates for the same names."""
    folder = tmp_path_factory.mktemp("stranger")
    ensure_certs(folder, SERVICES)
    return folder


async def serve(tls: TlsFiles) -> AsyncIterator[str]:
    address = f"127.0.0.1:{free_port()}"
    server = GrpcServerService(
        address=address, service_names=[], registrars=[], grace_seconds=0, tls=tls
    )
    await server.on_start()
    try:
        yield address
    finally:
        await server.on_stop()


@pytest.fixture
async def inventory(certs: Path) -> AsyncIterator[str]:
    """A server showing inventory's certificate; its address."""
    async for address in serve(files_in(certs, "inventory")):
        yield address


async def health(channel: grpc.aio.Channel) -> grpc.StatusCode:
    """How a health check over `channel` ends (OK when it was answered)."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_client_with_a_certificate_from_the_ca_is_served(
    inventory: str, certs: Path
) -> None:
    assert await grpc_serving(inventory, files_in(certs, "client"))


async def test_a_client_without_a_certificate_is_refused(inventory: str, certs: Path) -> None:
    trusting_only = grpc.ssl_channel_credentials(root_certificates=files_in(certs, "client").ca_pem)

    async with grpc.aio.secure_channel(inventory, trusting_only) as channel:
        assert await health(channel) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_with_a_certificate_from_another_ca_is_refused(
    inventory: str, certs: Path, stranger: Path
) -> None:
    theirs = files_in(stranger, "client")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files_in(certs, "client").ca_pem,  # it trusts the server
        private_key=theirs.key_pem,
        certificate_chain=theirs.cert_pem,
    )

    async with grpc.aio.secure_channel(inventory, credentials) as channel:
        assert await health(channel) == grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_is_refused(inventory: str) -> None:
    async with grpc.aio.insecure_channel(inventory) as channel:
        assert await health(channel) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_refuses_a_server_certified_by_another_ca(
    certs: Path, stranger: Path
) -> None:
    async for impostor in serve(files_in(stranger, "inventory")):
        async with open_channel(impostor, files_in(certs, "client")) as channel:
            assert await health(channel) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_expects_inventory_refuses_another_services_certificate(
    certs: Path,
) -> None:
    client = files_in(certs, "client")
    async for notifier in serve(files_in(certs, "notifier")):
        async with open_channel(notifier, client, server_name="inventory") as expecting_inventory:
            assert await health(expecting_inventory) == grpc.StatusCode.UNAVAILABLE
        async with open_channel(notifier, client, server_name="notifier") as expecting_notifier:
            assert await health(expecting_notifier) == grpc.StatusCode.OK
