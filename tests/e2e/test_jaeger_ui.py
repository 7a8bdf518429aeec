"""The Jaeger web UI as a person sees it: pages rendered by headless Chromium."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from shop_devstack.stack import Stack
from shop_devstack.testing import Shop, eventually, finished, new_customer
from shop_devstack.trace import find_order_traces, trace_url

pytestmark = pytest.mark.integration

CREATE_ORDER = "/shop.orders.v1.OrderService/CreateOrder"


async def render(stack: Stack, url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run (they fetch the trace from Jaeger's API)."""
    chromium = stack.tools / "bin" / "chromium"
    assert chromium.exists(), f"{chromium} is missing: run `deploy/bootstrap.sh chromium`"
    process = await asyncio.create_subprocess_exec(
        str(chromium),
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    dom, errors = await finished(process, 120)
    assert process.returncode == 0, errors.decode(errors="replace")[-2000:]
    return dom.decode()


def texts(dom: str, css_class: str) -> list[str]:
    """The text of each element whose class list starts with `css_class`."""
    found = re.findall(rf'class="{css_class}\b[^"]*"[^>]*>(.*?)<', dom)
    return [html.unescape(text).strip() for text in found]


def visible_text(dom: str) -> str:
    """The body's text, one space between elements."""
    body = re.sub(r"<script.*?</script>", "", dom[dom.find("<body") :], flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


async def three_service_trace(stack: Stack, order_id: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{stack.ports.jaeger_ui}"

    async def complete() -> dict[str, Any]:
        traces = [
            t
            for t in find_order_traces(order_id, base)
            if any(s["operationName"] == CREATE_ORDER for s in t["spans"])
        ]
        assert len(traces) == 1
        services = {p["serviceName"] for p in traces[0]["processes"].values()}
        assert services == {"orders", "inventory", "notifier"}, services
        return traces[0]

    return await eventually(complete, within=30)


@pytest.fixture
def ui(stack: Stack) -> str:
    assert stack.jaeger_ui_assets is not None, (
        "the Jaeger UI's files are missing: run `deploy/bootstrap.sh jaeger-ui`"
        " (SHOP_MIRROR or network needed; see the README)"
    )
    return f"http://127.0.0.1:{stack.ports.jaeger_ui}"


async def test_the_trace_page_shows_a_created_order_across_the_three_services(
    stack: Stack, shop: Shop, ui: str, tmp_path: Path
) -> None:
    order = await shop.create_order(new_customer(), {"MUG-001": 1})
    trace = await three_service_trace(stack, order.order_id)

    dom = await render(stack, trace_url(trace["traceID"], ui), tmp_path)

    assert "This is not the Jaeger UI" not in dom
    rows = list(zip(texts(dom, "span-svc-name"), texts(dom, "endpoint-name"), strict=True))
    assert rows[0] == ("orders", CREATE_ORDER)
    assert {service for service, _ in rows} == {"orders", "inventory", "notifier"}
    assert len(rows) >= len(trace["spans"])  # late spans may have arrived since
    assert all("/" not in name or name.startswith("/shop.") for _, name in rows), rows


async def test_a_search_by_order_id_tag_finds_the_orders_trace(
    stack: Stack, shop: Shop, ui: str, tmp_path: Path
) -> None:
    order = await shop.create_order(new_customer(), {"SOCKS-3P": 1})
    trace = await three_service_trace(stack, order.order_id)
    query = urllib.parse.urlencode(
        {"service": "orders", "tags": json.dumps({"shop.order_id": order.order_id})}
    )

    dom = await render(stack, f"{ui}/search?{query}", tmp_path)

    shown = visible_text(dom)
    assert "1 Trace " in shown
    # The result's title: root service and operation (split where it may wrap), short id.
    assert re.search(rf"orders: /.*CreateOrder {trace['traceID'][:7]} ", shown)
    assert all(f"{service} (" in shown for service in ("orders", "inventory", "notifier"))


def service_graph(ui: str) -> set[tuple[str, str]]:
    """The last hour's caller -> callee pairs, from the API the System Architecture tab reads."""
    now_ms = int(time.time() * 1000)
    url = f"{ui}/api/dependencies?endTs={now_ms}&lookback=3600000"
    with urllib.request.urlopen(url, timeout=5) as response:
        return {(d["parent"], d["child"]) for d in json.load(response)["data"]}


async def test_system_architecture_links_the_services_over_grpc_and_kafka(
    stack: Stack, shop: Shop, ui: str
) -> None:
    order = await shop.create_order(new_customer(), {"MUG-001": 1})
    await three_service_trace(stack, order.order_id)
    # The notifier handles one of inventory's events, StockLow: write off enough desk lamps
    # to cross the threshold (5), then put them back.
    level = await shop.stock("LAMP-DESK")
    top_up = max(0, 6 - level.available)
    written_off = level.available + top_up - 4
    if top_up:
        await shop.add_product_stock("LAMP-DESK", top_up)
    await shop.add_product_stock("LAMP-DESK", -written_off)

    async def linked() -> None:
        edges = await asyncio.to_thread(service_graph, ui)
        # What the System Architecture tab draws: ReserveStock, the two topics' consumers.
        assert {("orders", "inventory"), ("orders", "notifier"), ("inventory", "notifier")} <= (
            edges
        )

    try:
        await eventually(linked, within=30)
    finally:
        await shop.add_product_stock("LAMP-DESK", written_off - top_up)


def test_about_jaeger_names_the_pinned_version(stack: Stack, ui: str) -> None:
    pinned = re.search(
        r"^JAEGER_V2_VERSION=(\S+)$",
        (stack.root / "deploy" / "versions.env").read_text(),
        re.MULTILINE,
    )
    assert pinned is not None
    with urllib.request.urlopen(ui, timeout=5) as response:
        index = response.read().decode()
    assert f'"gitVersion":"{pinned[1]}"' in index
