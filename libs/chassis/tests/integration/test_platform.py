"""The platform as a user meets it: real Kafka, the three service processes, grpcurl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.kafka import INVENTORY_TOPIC, ORDERS_TOPIC, create_app
from shop_chassis.outbox import refused_for_good
from shop_chassis.registry import SERVICES
from shop_chassis.settings import ServiceSettings
from shop_devstack.procs import Process, StackError, free_port
from shop_devstack.stack import Stack, Supervisor, grpc_serving

pytestmark = pytest.mark.integration

GRPCURL = str(Path(__file__).parents[4] / ".tools" / "bin" / "grpcurl")
APIS = {service.name: service.api for service in SERVICES}


def grpcurl(*args: str) -> str:
    result = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", list(APIS))
def test_grpcurl_lists_the_api_health_and_reflection(services: dict[str, str], name: str) -> None:
    listed = grpcurl(services[name], "list").split()
    assert sorted(listed) == sorted(
        [APIS[name], "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    )


@pytest.mark.parametrize("name", list(APIS))
def test_health_check_answers_serving_for_the_server_and_its_api(
    services: dict[str, str], name: str
) -> None:
    assert json.loads(grpcurl(services[name], "grpc.health.v1.Health/Check")) == {
        "status": "SERVING"
    }
    request = json.dumps({"service": APIS[name]})
    assert json.loads(grpcurl("-d", request, services[name], "grpc.health.v1.Health/Check")) == {
        "status": "SERVING"
    }


def test_metrics_endpoint_of_each_service_answers(stack: Stack, services: dict[str, str]) -> None:
    for name in services:
        url = f"http://127.0.0.1:{stack.ports.metrics[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        assert "python_info" in body
        assert "shop_faust_messages_received" in body


async def test_services_declared_the_topics_with_explicit_partitions(
    stack: Stack, services: dict[str, str]
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([ORDERS_TOPIC, INVENTORY_TOPIC])
    finally:
        await admin.close()
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
    assert partitions == {ORDERS_TOPIC: 3, INVENTORY_TOPIC: 3}


async def test_the_services_producer_refuses_an_oversized_record_as_the_relay_parks_for_good(
    stack: Stack, tmp_path: Path
) -> None:
    topic = f"test.too-large.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    settings = ServiceSettings.from_env(
        "orders",
        {"KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "SHOP_VAR_DIR": str(tmp_path)},
    )
    producer = create_app(settings).producer  # the one the outbox relay sends through
    await producer.start()

    async def send(size: int) -> Any:
        delivery = await producer.send(
            topic, key=b"order-1", value=b"x" * size, partition=0, timestamp=None, headers=[]
        )
        return await asyncio.wait_for(delivery, 30)

    try:
        for size in (3_000_000, 1_500_000):  # over the client's limit; over the broker's only
            with pytest.raises(Exception) as refusal:
                await send(size)
            assert refused_for_good(refusal.value), f"{size}: {refusal.value!r}"
        # The refusals cost the partition nothing: the next record still goes through.
        assert (await send(100)).offset == 0
    finally:
        await producer.stop()


async def test_python_produces_to_and_consumes_from_kafka_with_headers(stack: Stack) -> None:
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        metadata = await producer.send_and_wait(
            topic, b"payload", key=b"order-1", headers=[("event-type", b"Test")]
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert (record.partition, record.offset) == (metadata.partition, metadata.offset)
    assert (record.key, record.value) == (b"order-1", b"payload")
    assert list(record.headers) == [("event-type", b"Test")]


async def start_second(stack: Stack, name: str, **env: str) -> tuple[Process, str]:
    """Another process of service `name` on its own ports, database and consumer group, so the
    session's services are left alone; returns it and its gRPC address."""
    port = free_port()
    prefix = name.upper()
    spec = stack.service(
        name,
        {
            f"{prefix}_GRPC_PORT": str(port),
            f"{prefix}_METRICS_PORT": str(free_port()),
            "OTEL_SDK_DISABLED": "true",
            "SHOP_VAR_DIR": str(stack.var_dir / f"second-{name}"),
            f"{prefix}_KAFKA_CONSUMER_GROUP": f"test-second-{name}",
            **env,
        },
    )
    address = f"127.0.0.1:{port}"
    spec.ports = {}
    spec.ready = lambda: grpc_serving(address)
    supervisor = Supervisor(stack.var_dir / f"second-{name}", out=None)
    return await supervisor.start(spec), address


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_service_logs_its_database_url_with_the_password_masked(
    stack: Stack, database_url: str
) -> None:
    secret = "pa%40ss-s3cret"  # a percent-encoded '@', which the migration's config must take
    url = database_url.replace("postgres@", f"postgres:{secret}@", 1)  # trust auth ignores it

    process, _ = await start_second(stack, "orders", ORDERS_DATABASE_URL=url)
    await process.stop()

    log = (stack.var_dir / "second-orders" / "logs" / "orders.log").read_text()
    opened = [json.loads(line) for line in log.splitlines() if '"database_opened"' in line]
    assert [line["url"] for line in opened] == [url.replace(secret, "***")]
    assert secret not in log
    assert "pa@ss-s3cret" not in log


async def test_sigterm_stops_a_service_cleanly(stack: Stack) -> None:
    """SIGTERM must end a service with code 0."""
    process, _ = await start_second(stack, "inventory")
    await process.stop()
    assert process.proc is not None
    assert process.proc.returncode == 0


def test_a_second_stack_on_busy_ports_fails_fast_naming_the_port(
    stack: Stack, services: dict[str, str]
) -> None:
    with pytest.raises(StackError, match=rf"port {stack.ports.grpc['orders']} \(orders grpc\)"):
        Supervisor.check_ports([stack.service("orders")])


def test_ghz_can_call_a_method_through_reflection(services: dict[str, str]) -> None:
    """ghz resolves `Service.Method` symbols through reflection, which grpcurl never asks."""
    ghz = Path(GRPCURL).with_name("ghz")
    result = subprocess.run(
        [
            str(ghz),
            "--insecure",
            "--call",
            "shop.inventory.v1.InventoryService/ListProducts",
            "-d",
            "{}",
            "-n",
            "5",
            "--format",
            "json",
            services["inventory"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["statusCodeDistribution"] == {"OK": 5}


async def test_sigterm_ends_open_streams_with_unavailable_and_stops_within_the_grace(
    stack: Stack,
) -> None:
    """A client streaming from the notifier must not hold its shutdown hostage."""
    process, address = await start_second(stack, "notifier", SHUTDOWN_GRACE_SECONDS="30")
    async with grpc.aio.insecure_channel(address) as channel:
        stream = notifier_pb2_grpc.NotifierServiceStub(channel).StreamNotifications(
            notifier_pb2.StreamNotificationsRequest()
        )
        await asyncio.sleep(0.5)  # the stream is open on the server
        started = asyncio.get_running_loop().time()

        await process.stop()

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stream.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert asyncio.get_running_loop().time() - started < 20  # well inside the 30 s grace
    assert process.proc is not None
    assert process.proc.returncode == 0
