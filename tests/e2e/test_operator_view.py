"""`make story`, `make logs` and `make status` against the session's real stack, run as the
commands a person runs (`python -m shop_devstack ...`), pointed at it by its ports and var dir."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from shop.inventory.v1 import inventory_pb2
from shop.orders.v1 import orders_pb2
from shop_chassis.kafka import ORDERS_TOPIC
from shop_devstack.procs import free_port
from shop_devstack.prometheus import Prometheus
from shop_devstack.stack import Stack
from shop_devstack.testing import Shop, eventually, finished, new_customer
from shop_devstack.trace import find_order_traces, spans_of

pytestmark = pytest.mark.integration

CREATE_ORDER = "/shop.orders.v1.OrderService/CreateOrder"
CANCEL_ORDER = "/shop.orders.v1.OrderService/CancelOrder"
LATENCY = 'grpc_server_handling_seconds_bucket{job="shop",grpc_method="CreateOrder"}'


async def devstack(
    stack: Stack, *args: str, var_dir: Path | None = None, **env: str
) -> tuple[int, str]:
    """Run `python -m shop_devstack <args>` against `stack`; its exit status and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shop_devstack",
        *args,
        "--var-dir",
        str(var_dir or stack.var_dir),
        env={**os.environ, **stack.ports.as_env(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await finished(process, 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


@dataclass
class ToldOrder:
    order_id: str
    create_trace: str
    cancel_trace: str
    bucket: str  # the `le` of the CreateOrder's exemplar


@pytest.fixture(scope="module")
async def told(stack: Stack, shop: Shop) -> ToldOrder:
    """An order created and cancelled, once its traces, notifications and CreateOrder
    exemplar are all where the story reads them."""
    order = await shop.create_order(new_customer(), {"MUG-001": 1, "SOCKS-3P": 2})
    await shop.orders.CancelOrder(
        orders_pb2.CancelOrderRequest(order_id=order.order_id, reason="story time")
    )
    jaeger = f"http://127.0.0.1:{stack.ports.jaeger_ui}"

    async def traced() -> dict[str, str]:
        found = {}
        for trace in find_order_traces(order.order_id, jaeger):
            spans = {(s.service, s.name) for s in spans_of(trace).values()}
            assert ("notifier", "shop.orders.v1 process") in spans, "not all exported yet"
            found |= {name: trace["traceID"] for _, name in spans if name.startswith("/")}
        assert CREATE_ORDER in found and CANCEL_ORDER in found, found
        return found

    async def notified() -> None:
        assert len(await shop.notifications(order_id=order.order_id)) == 2

    traces = await eventually(traced, within=30)
    await eventually(notified)
    prometheus = Prometheus(stack.ports.prometheus)

    async def exemplar() -> str:
        for series in prometheus.exemplars(LATENCY, time.time() - 300, time.time()):
            for found in series["exemplars"]:
                if found["labels"]["trace_id"] == traces[CREATE_ORDER]:
                    return str(series["seriesLabels"]["le"])
        raise AssertionError("Prometheus has not scraped the exemplar yet")

    bucket = await eventually(exemplar, within=30)
    return ToldOrder(order.order_id, traces[CREATE_ORDER], traces[CANCEL_ORDER], bucket)


def section(output: str, title: str) -> str:
    """The part of a story from the heading that names `title` to the next heading."""
    match = re.search(
        rf"^── \d+\. {re.escape(title)} .*?(?=^── |^notifications)", output, re.M | re.S
    )
    assert match, f"no section {title!r} in:\n{output}"
    return match.group(0)


async def test_a_story_tells_the_state_traces_log_lines_bucket_and_notifications_of_an_order(
    stack: Stack, told: ToldOrder
) -> None:
    code, output = await devstack(stack, "story", told.order_id)

    assert code == 0, output
    assert f"order {told.order_id}  CANCELLED" in output
    assert "cancelled: story time" in output
    create, cancel = (
        section(output, "OrderService/CreateOrder"),
        section(output, "OrderService/CancelOrder"),
    )
    assert output.index(create) < output.index(cancel)
    assert f"trace {told.create_trace}" in create and f"/trace/{told.create_trace}" in create
    assert re.search(r"orders\s+/shop.orders.v1.OrderService/CreateOrder\s+\|", create)
    for service, event in [
        ("inventory", "stock_reserved"),
        ("orders", "order_confirmed"),
        ("notifier", "notification_stored kind=ORDER_CONFIRMED"),
    ]:
        assert re.search(rf"^  \S+ {service} +INFO  {event}", create, re.M), (service, event)
    for service, event in [
        ("orders", "order_cancelled"),
        ("inventory", "stock_released"),
        ("notifier", "notification_stored kind=ORDER_CANCELLED"),
    ]:
        assert re.search(rf"^  \S+ {service} +INFO  {event}", cancel, re.M), (service, event)
    assert f'(le="{told.bucket}") of grpc_server_handling_seconds' in create
    assert re.search(r"^  \S+ \S+  ORDER_CONFIRMED  Order ", output, re.M)
    assert re.search(r"^  \S+ \S+  ORDER_CANCELLED  Order ", output, re.M)
    assert f"http://127.0.0.1:{stack.ports.prometheus}/graph?" in output


async def test_reading_a_story_does_not_add_a_trace_to_it(stack: Stack, told: ToldOrder) -> None:
    await devstack(stack, "story", told.order_id)
    await asyncio.sleep(2)  # past the services' span export delay and Jaeger's indexing

    code, output = await devstack(stack, "story", told.order_id)

    assert code == 0, output
    assert re.findall(r"^── \d+\. (\S+)", output, re.M) == [
        "OrderService/CreateOrder",
        "OrderService/CancelOrder",
    ]


async def test_a_story_without_prometheus_is_told_and_says_why_there_is_no_bucket(
    stack: Stack, told: ToldOrder
) -> None:
    code, output = await devstack(stack, "story", told.order_id, PROMETHEUS_PORT=str(free_port()))

    assert code == 0, output
    assert "CreateOrder latency: Prometheus does not answer at" in output
    assert "the trace says" in output
    assert "ORDER_CANCELLED" in output


async def test_the_story_of_an_order_that_does_not_exist_says_so_and_exits_1(
    stack: Stack, services: dict[str, str]
) -> None:
    missing = str(uuid.uuid4())

    code, output = await devstack(stack, "story", missing)

    assert (code, output.strip()) == (1, f"no order {missing} in orders at {services['orders']}")


async def test_a_story_without_a_running_stack_says_how_to_start_one_and_exits_3(
    stack: Stack,
) -> None:
    code, output = await devstack(
        stack, "story", str(uuid.uuid4()), ORDERS_GRPC_PORT=str(free_port())
    )

    assert code == 3
    assert "orders does not answer at" in output and "Start it with `make run`" in output


async def test_the_logs_of_an_order_are_its_lines_from_every_service_in_time_order(
    stack: Stack, told: ToldOrder
) -> None:
    code, output = await devstack(
        stack, "logs", "--no-follow", "--id", told.order_id, "--format", "json"
    )

    lines = [json.loads(line) for line in output.splitlines()]
    assert code == 0, output
    assert {(line["process"], line["event"]) for line in lines} >= {
        ("inventory", "stock_reserved"),
        ("orders", "order_confirmed"),
        ("notifier", "notification_stored"),
        ("orders", "order_cancelled"),
        ("inventory", "stock_released"),
    }
    assert {line["trace_id"] for line in lines} == {told.create_trace, told.cancel_trace}
    stamps = [line["timestamp"] for line in lines]
    assert stamps == sorted(stamps)


async def test_logs_of_one_process_at_one_level_are_only_those_and_labelled_with_it(
    stack: Stack, services: dict[str, str]
) -> None:
    code, output = await devstack(
        stack, "logs", "--no-follow", "--service", "kafka", "--level", "warning"
    )

    assert code == 0, output
    lines = output.splitlines()
    assert lines, "Kafka warns when it formats a fresh log (controller activation)"
    assert all(re.match(r"\S+ kafka +(WARN|ERROR|CRIT) ", line) for line in lines), lines[:5]


async def test_logs_of_a_process_the_stack_does_not_have_name_the_ones_it_has(
    stack: Stack, services: dict[str, str]
) -> None:
    code, output = await devstack(stack, "logs", "--no-follow", "--service", "ordrs")

    assert code == 2
    assert "no process named ordrs" in output and "orders" in output and "kafka" in output


async def test_following_logs_shows_each_new_line_and_ends_clean_on_ctrl_c(
    stack: Stack, shop: Shop
) -> None:
    follower = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shop_devstack",
        "logs",
        "--service",
        "inventory",
        "--since",
        "1m",
        "--var-dir",
        str(stack.var_dir),
        env={**os.environ, **stack.ports.as_env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert follower.stdout is not None
    seen: list[str] = []

    async def read() -> None:
        assert follower.stdout is not None
        async for raw in follower.stdout:
            seen.append(raw.decode())

    reading = asyncio.create_task(read())

    async def adjusted(reason: str) -> None:
        await shop.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(sku="MUG-001", delta=1, reason=reason), timeout=5
        )

        async def shown() -> None:
            assert any(f"reason={reason}" in line for line in seen)

        await eventually(shown, within=15)

    try:
        await adjusted(f"before-{uuid.uuid4().hex[:8]}")  # the follower is reading now
        await adjusted(f"after-{uuid.uuid4().hex[:8]}")  # so this one came through following
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(follower.wait(), 10)
        except TimeoutError:
            follower.kill()  # a test leaves no process of its own behind
            await follower.wait()
            pytest.fail("`shop-stack logs` was still following 10 s after its Ctrl-C")
        finally:
            await reading

    assert follower.returncode == 0
    assert follower.stderr is not None and await follower.stderr.read() == b""
    assert all(re.match(r"\S+ inventory ", line) for line in seen)


def status_rows(output: str) -> dict[str, list[str]]:
    """The processes table's rows by process name."""
    table = output.split("\nprocesses\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return {row.split()[0]: row.split() for row in table}


async def test_status_shows_every_process_server_and_the_figures_of_the_session_stack(
    stack: Stack, shop: Shop
) -> None:
    await shop.create_order(new_customer(), {"MUG-001": 1})
    processes = json.loads((stack.var_dir / "processes.json").read_text())

    async def with_the_orders_figures() -> tuple[int, str]:
        code, output = await devstack(stack, "status")
        assert re.search(r"^orders OrderService/CreateOrder +\d+\.\d\d ", output, re.M), output
        assert re.search(r"^notifier +shop.orders.v1 +\d+$", output, re.M), output  # its lag
        return code, output

    code, output = await eventually(with_the_orders_figures, within=40)

    rows = status_rows(output)
    assert {e["name"]: rows[e["name"]][:3] for e in processes} == {
        e["name"]: [e["name"], "up", str(e["pid"])] for e in processes
    }
    assert set(rows) == {"kafka", "jaeger", "prometheus", "inventory", "orders", "notifier"}
    assert [rows[name][6:] for name in ("inventory", "orders", "notifier")] == [
        ["SERVING", "up"]
    ] * 3
    assert re.search(r"^orders +\d+ +\d+ s$", output, re.M)
    reds = re.findall(r"^red .*", output, re.M)
    assert code == (1 if reds else 0), output


async def test_status_names_a_process_that_is_down_and_exits_1(
    stack: Stack, services: dict[str, str], tmp_path: Path
) -> None:
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "")
    await gone.wait()
    processes = json.loads((stack.var_dir / "processes.json").read_text())
    for entry in processes:
        if entry["name"] == "notifier":
            entry["pid"] = gone.pid
    (tmp_path / "processes.json").write_text(json.dumps(processes))

    code, output = await devstack(stack, "status", var_dir=tmp_path)

    assert code == 1, output
    assert status_rows(output)["notifier"][:3] == ["notifier", "down", str(gone.pid)]
    assert re.search(r"^red +notifier is not running$", output, re.M), output


async def test_status_without_a_stack_says_so_and_exits_3(stack: Stack, tmp_path: Path) -> None:
    code, output = await devstack(stack, "status", var_dir=tmp_path)

    assert code == 3
    assert f"no stack runs in {tmp_path}" in output and "make run" in output


async def undecodable_event(stack: Stack) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            ORDERS_TOPIC,
            b"\xff\xffnot protobuf",
            key=str(uuid.uuid4()).encode(),
            headers=[
                ("event-id", str(uuid.uuid4()).encode()),
                ("event-type", b"OrderCancelled"),  # handled by inventory and notifier
            ],
        )
    finally:
        await producer.stop()


async def test_a_dead_letter_is_yellow_in_status_exactly_as_its_alert_fires(
    stack: Stack, services: dict[str, str]
) -> None:
    await undecodable_event(stack)
    alerts_api = f"http://127.0.0.1:{stack.ports.prometheus}/api/v1/alerts"

    async def firing() -> list[dict[str, str]]:
        def get() -> list[dict[str, str]]:

            with urllib.request.urlopen(alerts_api, timeout=5) as response:
                alerts = json.load(response)["data"]["alerts"]
            return [
                a["labels"]
                for a in alerts
                if a["labels"]["alertname"] == "ShopKafkaEventsDeadLettered"
            ]

        found = await asyncio.to_thread(get)
        assert {(a["service"], a["topic"]) for a in found} >= {
            ("notifier", ORDERS_TOPIC),
            ("inventory", ORDERS_TOPIC),
        }, found
        return found

    fired = await eventually(firing, within=40)
    code, output = await devstack(stack, "status")

    for alert in fired:
        assert re.search(
            rf"^yellow +{alert['service']} dead letters from {re.escape(alert['topic'])}"
            rf" \({alert['reason']}\) \d+: ShopKafkaEventsDeadLettered \(> 0, warning\)$",
            output,
            re.M,
        ), output
    assert code == (1 if re.search(r"^red ", output, re.M) else 0), output
