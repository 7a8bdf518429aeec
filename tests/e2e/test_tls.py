"""SHOP_TLS=1: every gRPC server asks for a client certificate signed by the stack's CA, and
orders calls inventory over mutual TLS.

The stack is the test's own, shaped like `make run-cluster` (two replicas of each service on
PostgreSQL, orders balancing over both inventory replicas through an `ipv4:a,b` target) with
one Kafka broker and no Jaeger or Prometheus, and a CA of its own in var/test/tls/certs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from shop.notifier.v1 import notifier_pb2
from shop.orders.v1 import orders_pb2
from shop_chassis.tls import files_in
from shop_devstack.certs import ensure_certs
from shop_devstack.cli import grpcurl_flags
from shop_devstack.procs import free_port
from shop_devstack.stack import (
    SERVICES,
    Ports,
    Stack,
    Supervisor,
    Topology,
    grpc_serving,
    repo_root,
)
from shop_devstack.testing import Shop, eventually, finished, new_customer, value

pytestmark = pytest.mark.integration

ROOT = repo_root()
TWO_OF_EACH = Topology("tls", brokers=1, replicas=2, postgres=True)
RESERVED = {"grpc_type": "unary", "grpc_service": "shop.inventory.v1.InventoryService"}


@pytest.fixture(scope="module")
async def tls_stack() -> AsyncIterator[Stack]:
    var_dir = ROOT / "var" / "test" / "tls"
    shutil.rmtree(var_dir, ignore_errors=True)
    stack = Stack(var_dir, Ports.free(), topology=TWO_OF_EACH, tls_dir=var_dir / "certs")
    supervisor = Supervisor(var_dir, out=sys.stderr if "-s" in sys.argv else None)
    try:
        stack.prepare_certs()
        await supervisor.start(await stack.kafka())
        await supervisor.start(await stack.postgres(stack.ports.postgres, fresh=True))
        await stack.create_databases()
        for spec in stack.services({"OTEL_SDK_DISABLED": "true"}):
            await supervisor.start(spec)
        yield stack
    finally:
        await supervisor.stop_all()


def addresses(stack: Stack, replica: int = 1) -> dict[str, str]:
    return {name: f"127.0.0.1:{stack.ports.replica(name, replica)[0]}" for name in SERVICES}


def every_instance(stack: Stack) -> list[str]:
    return [address for r in stack.replicas for address in addresses(stack, r).values()]


def tools_env(stack: Stack, **extra: str) -> dict[str, str]:
    """What `make demo` / `make bench` read to find this stack."""
    assert stack.tls_dir is not None
    env = {**os.environ, "SHOP_TLS": "1", "SHOP_TLS_DIR": str(stack.tls_dir), **extra}
    for name in SERVICES:
        env[f"{name.upper()}_GRPC_PORT"] = str(stack.ports.grpc[name])
        env[f"{name.upper()}_METRICS_PORT"] = str(stack.ports.metrics[name])
    env["JAEGER_UI_PORT"] = str(free_port())  # none here: the demo says so and goes on
    return env


async def refused(address: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    """The status a health check over `credentials` ends with (OK if it was answered)."""
    async with grpc.aio.secure_channel(address, credentials) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            await check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_an_order_goes_from_orders_through_inventory_and_kafka_to_the_notifier(
    tls_stack: Stack,
) -> None:
    shop = Shop(addresses(tls_stack), tls_stack.client_tls)
    try:
        customer = new_customer()

        order = await shop.create_order(customer, {"MUG-001": 2})

        assert order.status == orders_pb2.ORDER_STATUS_CONFIRMED
        assert order.total_cents > 0  # priced by inventory, over mutual TLS

        async def notified() -> None:
            found = await shop.notifications(customer_id=customer)
            assert [(n.order_id, n.kind) for n in found] == [
                (order.order_id, notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED)
            ]

        await eventually(notified, within=30)
    finally:
        await shop.close()


async def test_orders_balances_its_mutual_tls_calls_over_both_inventory_replicas(
    tls_stack: Stack,
) -> None:
    def reserved(replica: int) -> float:
        return value(
            tls_stack,
            "inventory",
            "grpc_server_handled_total",
            replica,
            **RESERVED,
            grpc_method="ReserveStock",
            grpc_code="OK",
        )

    before = {replica: reserved(replica) for replica in tls_stack.replicas}
    shop = Shop(addresses(tls_stack), tls_stack.client_tls)
    try:
        for _ in range(6):
            await shop.create_order(new_customer(), {"SOCKS-3P": 1})
    finally:
        await shop.close()

    assert all(reserved(replica) > before[replica] for replica in tls_stack.replicas)


async def test_a_client_without_a_certificate_is_refused_by_every_service(
    tls_stack: Stack,
) -> None:
    assert tls_stack.client_tls is not None
    trusting_only = grpc.ssl_channel_credentials(root_certificates=tls_stack.client_tls.ca_pem)

    codes = [await refused(address, trusting_only) for address in every_instance(tls_stack)]

    assert codes == [grpc.StatusCode.UNAVAILABLE] * len(codes)


async def test_a_client_with_a_certificate_from_another_ca_is_refused_by_every_service(
    tls_stack: Stack, tmp_path: Path
) -> None:
    assert tls_stack.client_tls is not None
    ensure_certs(tmp_path, [])
    stranger = files_in(tmp_path, "client")
    # It trusts the stack's CA, so only the server's refusal can end the call.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_stack.client_tls.ca_pem,
        private_key=stranger.key_pem,
        certificate_chain=stranger.cert_pem,
    )

    codes = [await refused(address, credentials) for address in every_instance(tls_stack)]

    assert codes == [grpc.StatusCode.UNAVAILABLE] * len(codes)
    for address in every_instance(tls_stack):  # and the servers are unharmed
        assert await grpc_serving(address, tls_stack.client_tls)


async def test_a_plaintext_client_is_refused(tls_stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refusal:
        await grpc_serving(addresses(tls_stack)["orders"], tls=None)

    assert refusal.value.code() == grpc.StatusCode.UNAVAILABLE


def grpcurl(stack: Stack, flags: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".tools" / "bin" / "grpcurl"), *shlex.split(flags), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_grpcurl_with_the_flags_the_banner_and_readme_give_lists_and_calls_services(
    tls_stack: Stack,
) -> None:
    flags = grpcurl_flags(tls_stack.tls_dir)
    inventory = addresses(tls_stack)["inventory"]

    listed = grpcurl(tls_stack, flags, addresses(tls_stack)["orders"], "list")
    stock = grpcurl(
        tls_stack,
        flags,
        "-d",
        '{"sku": "MUG-001"}',
        inventory,
        "shop.inventory.v1.InventoryService/GetStock",
    )
    without_certificate = grpcurl(
        tls_stack, f"-cacert {tls_stack.tls_dir}/ca.pem", inventory, "list"
    )

    assert listed.returncode == 0, listed.stderr
    assert "shop.orders.v1.OrderService" in listed.stdout.split()
    assert stock.returncode == 0, stock.stderr
    assert json.loads(stock.stdout)["sku"] == "MUG-001"
    assert without_certificate.returncode != 0


async def test_make_demo_places_its_orders_with_shop_tls_set(tls_stack: Stack) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shop_devstack",
        "demo",
        cwd=ROOT,
        env=tools_env(tls_stack),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await finished(process, 90))[0].decode()

    assert process.returncode == 0, output
    assert "1. CreateOrder -> ORDER_STATUS_CONFIRMED" in output
    assert "Notifications (newest first)" in output


async def test_make_demo_without_shop_tls_says_to_set_it(tls_stack: Stack) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shop_devstack",
        "demo",
        cwd=ROOT,
        env=tools_env(tls_stack, SHOP_TLS="0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await finished(process, 60))[0].decode()

    assert process.returncode == 1
    assert "run this with SHOP_TLS=1 too" in output


async def test_the_bench_measures_the_stack_and_its_anchors_over_mutual_tls(
    tls_stack: Stack, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtest",
        "--profiles",
        "smoke",
        "--duration",
        "1s",
        "--out-dir",
        str(tmp_path),
        cwd=ROOT,
        env=tools_env(tls_stack),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await finished(process, 180))[0].decode()

    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert process.returncode == 0, output
    for result in summary["results"]:
        assert result["requests"] > 0 and result["errors"] == 0, result
        assert result["anchor"]["python"]["rps"] > 0 and result["anchor"]["go"]["rps"] > 0
    config = json.loads((tmp_path / "latest" / "smoke.get_stock.ghz.json").read_text())
    client = tls_stack.client_tls
    assert client is not None
    assert (config["insecure"], config["cacert"], config["cert"], config["key"]) == (
        False,
        str(client.ca),
        str(client.cert),
        str(client.key),
    )
