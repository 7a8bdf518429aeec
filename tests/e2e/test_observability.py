"""Traces in the real Jaeger, metrics on /metrics and in the real Prometheus, logs."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from shop.orders.v1 import orders_pb2
from shop_devstack.stack import Stack, repo_root, service_python_env
from shop_devstack.testing import Shop, eventually, new_customer, samples, scrape, value
from shop_devstack.trace import Span, find_order_traces, spans_of, waterfall

pytestmark = pytest.mark.integration

ROOT = repo_root()


def ancestors(span: Span, spans: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id in spans:
        span = spans[span.parent_id]
        chain.append(span)
    return chain


PROCESSED_BY_NOTIFIER = ("notifier", "shop.orders.v1 process")


async def order_trace(
    stack: Stack, order_id: str, root: str, *expected: tuple[str, str]
) -> dict[str, Any]:
    """The one trace whose root is `root`, once it holds the `expected` (service, span)s."""
    base = f"http://127.0.0.1:{stack.ports.jaeger_ui}"

    async def complete() -> dict[str, Any]:
        traces = [
            t
            for t in find_order_traces(order_id, base)
            if any(s["operationName"] == root for s in t["spans"])
        ]
        assert len(traces) == 1, f"{len(traces)} traces with {root}"
        spans = {(s.service, s.name) for s in spans_of(traces[0]).values()}
        assert set(expected) <= spans, set(expected) - spans
        return traces[0]

    return await eventually(complete, within=30)


async def test_a_created_order_is_one_trace_across_grpc_and_kafka(stack: Stack, shop: Shop) -> None:
    order = await shop.create_order(new_customer(), {"MUG-001": 1})

    reserve_client = ("orders", "/shop.inventory.v1.InventoryService/ReserveStock")
    reserve_server = ("inventory", "/shop.inventory.v1.InventoryService/ReserveStock")
    published = ("orders", "shop.orders.v1 send")

    trace = await order_trace(
        stack,
        order.order_id,
        "/shop.orders.v1.OrderService/CreateOrder",
        reserve_client,
        reserve_server,
        published,
        PROCESSED_BY_NOTIFIER,
    )  # each process exports on its own schedule: wait for every span the test reads

    spans = spans_of(trace)
    assert {s.service for s in spans.values()} == {"orders", "inventory", "notifier"}
    by = {(s.service, s.name): s for s in spans.values()}
    assert by[reserve_server].parent_id == by[reserve_client].span_id
    publish = by[published]
    process = by[PROCESSED_BY_NOTIFIER]
    assert publish in ancestors(process, spans)
    raw = next(s for s in trace["spans"] if s["spanID"] == process.span_id)
    tags = {t["key"]: t["value"] for t in raw["tags"]}
    assert tags["messaging.system"] == "kafka"
    assert tags["messaging.destination.name"] == "shop.orders.v1"
    assert tags["messaging.consumer.group.name"] == "shop-notifier"
    assert tags["messaging.kafka.message.key"] == order.order_id
    assert "messaging.kafka.offset" in tags and "messaging.message.id" in tags
    links = [r["spanID"] for r in raw["references"] if r["refType"] == "FOLLOWS_FROM"]
    assert links == [publish.span_id]
    assert "orders" in waterfall(trace) and "notifier" in waterfall(trace)


async def test_a_cancellation_is_one_trace_through_release_and_notification(
    stack: Stack, shop: Shop
) -> None:
    order = await shop.create_order(new_customer(), {"MUG-001": 1})
    await shop.orders.CancelOrder(orders_pb2.CancelOrderRequest(order_id=order.order_id))

    released = ("inventory", "shop.orders.v1 process")
    stock_released = ("inventory", "shop.inventory.v1 send")

    trace = await order_trace(
        stack,
        order.order_id,
        "/shop.orders.v1.OrderService/CancelOrder",
        released,
        stock_released,
        PROCESSED_BY_NOTIFIER,
    )

    spans = spans_of(trace)
    by = {(s.service, s.name): s for s in spans.values()}
    assert by[released] in ancestors(by[stock_released], spans)


def log_lines(stack: Stack, service: str, containing: str) -> list[dict[str, Any]]:
    """The service's JSON log lines that contain `containing`, parsed."""
    log = stack.var_dir / "logs" / f"{service}.log"
    return [json.loads(line) for line in log.read_text().splitlines() if containing in line]


async def test_log_lines_of_a_request_carry_its_trace_id(stack: Stack, shop: Shop) -> None:
    order = await shop.create_order(new_customer(), {"SOCKS-3P": 1})
    trace = await order_trace(
        stack, order.order_id, "/shop.orders.v1.OrderService/CreateOrder", PROCESSED_BY_NOTIFIER
    )

    lines = [line for s in ("orders", "inventory") for line in log_lines(stack, s, order.order_id)]
    assert {line["event"] for line in lines} >= {"order_confirmed", "stock_reserved"}
    assert {line["trace_id"] for line in lines} == {trace["traceID"]}
    assert all(line["span_id"] and line["level"] and line["service"] for line in lines)


async def test_red_metrics_count_each_call_with_its_code(stack: Stack, shop: Shop) -> None:
    labels = {
        "grpc_type": "unary",
        "grpc_service": "shop.orders.v1.OrderService",
        "grpc_method": "GetOrder",
    }
    not_found = value(stack, "orders", "grpc_server_handled_total", **labels, grpc_code="NOT_FOUND")
    started = value(stack, "orders", "grpc_server_started_total", **labels)
    invalid = value(
        stack, "orders", "grpc_server_handled_total", **labels, grpc_code="INVALID_ARGUMENT"
    )

    with pytest.raises(grpc.aio.AioRpcError):
        await shop.orders.GetOrder(
            orders_pb2.GetOrderRequest(order_id="00000000-0000-4000-8000-000000000000")
        )
    with pytest.raises(grpc.aio.AioRpcError):
        await shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id="bad"))

    assert value(stack, "orders", "grpc_server_handled_total", **labels, grpc_code="NOT_FOUND") == (
        not_found + 1
    )
    assert value(
        stack, "orders", "grpc_server_handled_total", **labels, grpc_code="INVALID_ARGUMENT"
    ) == (invalid + 1)
    assert value(stack, "orders", "grpc_server_started_total", **labels) == started + 2
    histogram = samples(stack, "orders", "grpc_server_handling_seconds_count")
    assert histogram[frozenset(labels.items())] >= 2
    client = samples(stack, "orders", "grpc_client_handled_total")
    assert any(
        dict(k).get("grpc_method") == "ReserveStock" and dict(k).get("grpc_code") == "OK"
        for k in client
    )


async def test_latency_histograms_carry_trace_exemplars(stack: Stack, shop: Shop) -> None:
    await shop.create_order(new_customer(), {"MUG-001": 1})
    text = scrape(stack, "orders", openmetrics=True)
    assert re.search(
        r'^grpc_server_handling_seconds_bucket\{.*grpc_method="CreateOrder".*\} \S+ '
        r'# \{trace_id="[0-9a-f]{32}"\}',
        text,
        re.MULTILINE,
    )


async def test_consumer_lag_and_outbox_backlog_return_to_zero(stack: Stack, shop: Shop) -> None:
    published = value(stack, "orders", "shop_outbox_published_total", topic="shop.orders.v1")
    handled = value(
        stack,
        "notifier",
        "shop_kafka_events_processed_total",
        topic="shop.orders.v1",
        event_type="OrderConfirmed",
        outcome="ok",
    )

    await shop.create_order(new_customer(), {"MUG-001": 1})

    async def delivered() -> None:
        assert (
            value(stack, "orders", "shop_outbox_published_total", topic="shop.orders.v1")
            > published
        )
        assert (
            value(
                stack,
                "notifier",
                "shop_kafka_events_processed_total",
                topic="shop.orders.v1",
                event_type="OrderConfirmed",
                outcome="ok",
            )
            > handled
        )

    await eventually(delivered)
    await asyncio.sleep(6)  # one more measurement of each gauge (every 1 s and 5 s)

    async def drained() -> None:
        assert value(stack, "orders", "shop_outbox_backlog") == 0
        assert value(stack, "inventory", "shop_outbox_backlog") == 0
        lag = samples(stack, "notifier", "shop_kafka_consumer_lag")
        assert {dict(k)["topic"] for k in lag} >= {"shop.orders.v1", "shop.inventory.v1"}
        assert set(lag.values()) == {0.0}, lag

    await eventually(drained, within=30)
    assert value(stack, "orders", "shop_orders_total", status="confirmed") >= 1


async def test_each_service_prunes_the_bookkeeping_tables_it_has(
    stack: Stack, services: dict[str, str]
) -> None:
    pruned = {
        service: {
            dict(labels)["table"] for labels in samples(stack, service, "shop_pruned_rows_total")
        }
        for service in services
    }

    assert pruned == {
        "orders": {"outbox"},
        "inventory": {"outbox", "processed_events"},
        "notifier": {"processed_events"},
    }


def prometheus_query(stack: Stack, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.ports.prometheus}/api/v1/query?" + urllib.parse.urlencode(
        {"query": query}
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
    return result


async def test_prometheus_scrapes_every_service(stack: Stack, services: dict[str, str]) -> None:
    async def all_up() -> None:
        up = prometheus_query(stack, 'up{job="shop"}')
        assert {(r["metric"]["service"], r["value"][1]) for r in up} == {
            ("orders", "1"),
            ("inventory", "1"),
            ("notifier", "1"),
        }

    await eventually(all_up, within=30)


SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": (),
    "info": ("_info",),
    "unknown": (),
}


def dashboard_metric_names(path: Path) -> set[str]:
    top = json.loads(path.read_text())["panels"]
    panels = [*top, *(inner for row in top for inner in row.get("panels", []))]
    exprs = [t["expr"] for panel in panels for t in panel.get("targets", []) if "expr" in t]
    names = set()
    for expr in exprs:
        without_labels = re.sub(r"\{[^}]*\}|\b(?:by|without)\s*\([^)]*\)", "", expr)
        names |= set(re.findall(r"\b(?:grpc_|shop_|shop:|process_)[a-zA-Z0-9_:]+", without_labels))
    return names


async def test_every_dashboard_query_names_a_metric_that_exists(stack: Stack, shop: Shop) -> None:
    await shop.create_order(new_customer(), {"MUG-001": 1})
    exposed = set()
    for service in ("orders", "inventory", "notifier"):
        for family in text_string_to_metric_families(scrape(stack, service)):
            # Labelled series appear only once used; the family is declared from the start.
            exposed |= {family.name + suffix for suffix in ("", *SAMPLE_SUFFIXES[family.type])}
    rules = (ROOT / "deploy/prometheus/rules/recording.yml").read_text()
    recorded = set(re.findall(r"record:\s*(\S+)", rules))

    names = dashboard_metric_names(ROOT / "deploy/grafana/dashboards/shop.json")

    assert names, "the dashboard has no queries"
    assert names - exposed - recorded == set()


def test_each_service_froze_its_startup_heap_once_serving(stack: Stack) -> None:
    # shop_chassis.heap: collections then skip what the service built to start (≈ 110k
    # objects), which made each full collection stop the process for 50-200 ms under load.
    for service in ("orders", "inventory", "notifier"):
        events = log_lines(stack, service, '"startup_heap_frozen"')
        assert events, f"{service} logged no startup_heap_frozen"
        assert events[-1]["objects"] > 50_000, events[-1]


def test_each_service_runs_as_python_oo(stack: Stack) -> None:
    # Docstrings and asserts stay out of memory: ≈ 6 MiB of resident memory per service.
    expected = int(service_python_env()["PYTHONOPTIMIZE"])
    for service in ("orders", "inventory", "notifier"):
        starts = log_lines(stack, service, '"service_starting"')
        assert starts, f"{service} logged no service_starting"
        assert starts[-1]["python_optimize"] == expected, starts[-1]
