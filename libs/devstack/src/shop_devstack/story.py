"""`make story ID=<order id>`: everything about one order, in time order, on one screen.

    python -m shop_devstack story <order id> [--var-dir DIR]

Its state (GetOrder); every trace that touched it (create, cancel, reads; from Jaeger) as
the waterfall `make trace` prints, each followed by the log lines of every service that
carry its trace id; for a CreateOrder, the latency bucket its trace fell in, read from the
exemplar Prometheus keeps; the order's notifications (ListNotifications); links to the
Jaeger UI and Prometheus. Exit status: 0; 1 when there is no such order; 3 when the stack
does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from shop.notifier.v1 import notifier_pb2
from shop.orders.v1 import orders_pb2

from shop_devstack.logs import LogFolder, LogLine, Palette, Selection, colours_wanted, render
from shop_devstack.prometheus import Prometheus
from shop_devstack.running import add_location_arguments, locate
from shop_devstack.stack import SERVICES, Stack
from shop_devstack.testing import Shop
from shop_devstack.trace import find_order_traces, order_search_url, spans_of, trace_url, waterfall

NOT_FOUND, NO_STACK = 1, 3
# Sent with the story's own calls: a parent that is not sampled, so the services record no
# trace of them and reading an order's story does not add a GetOrder to it.
UNTRACED = (("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"),)
CREATE_ORDER = "/shop.orders.v1.OrderService/CreateOrder"
LATENCY = 'grpc_server_handling_seconds_bucket{job="shop",grpc_method="CreateOrder"}'


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"


def _order_lines(order: orders_pb2.Order) -> list[str]:
    status = orders_pb2.OrderStatus.Name(order.status).removeprefix("ORDER_STATUS_")
    lines = [
        f"order {order.order_id}  {status}",
        f"  customer {order.customer_id}, total {_money(order.total_cents)}",
        f"  created {_local(order.create_time.ToDatetime(UTC))},"
        f" updated {_local(order.update_time.ToDatetime(UTC))}",
    ]
    lines += [
        f"  {item.quantity} x {item.sku} at {_money(item.unit_price_cents)}" for item in order.items
    ]
    if order.cancel_reason:
        lines.append(f"  cancelled: {order.cancel_reason}")
    return lines


@dataclass
class Trace:
    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["traceID"])

    @property
    def start(self) -> datetime:
        first = min(span["startTime"] for span in self.raw["spans"])
        return datetime.fromtimestamp(first / 1e6, UTC)

    @property
    def roots(self) -> list[str]:
        spans = spans_of(self.raw)
        return [s.name for s in spans.values() if s.parent_id not in spans]

    def duration_of(self, operation: str) -> float | None:
        """Seconds the server span of `operation` took, if the trace has one."""
        for span in spans_of(self.raw).values():
            if span.name == operation and span.service == "orders" and span.parent_id is None:
                return span.duration_us / 1e6
        return None


def _bucket_line(prometheus: Prometheus, trace: Trace) -> str:
    """Which CreateOrder latency bucket the trace fell in, from its exemplar if Prometheus
    has it."""
    took = trace.duration_of(CREATE_ORDER)
    said = f" (the trace says {1000 * took:.1f} ms)" if took is not None else ""
    start = trace.start.timestamp() - 60
    try:
        found = prometheus.exemplars(LATENCY, start, time.time())
        bounds = sorted(
            {
                float(s.labels["le"])
                for s in prometheus.query(f"count by (le) ({LATENCY})", time.time())
            }
        )
    except OSError as error:
        return (
            f"CreateOrder latency: Prometheus does not answer at {prometheus.url} ({error}){said}"
        )
    for series in found:
        for exemplar in series["exemplars"]:
            if exemplar["labels"].get("trace_id") != trace.id:
                continue
            le = float(series["seriesLabels"]["le"])
            below = [b for b in bounds if b < le]
            lower = f"{1000 * below[-1]:g} ms < " if below else ""
            return (
                f"CreateOrder latency: {1000 * float(exemplar['value']):.1f} ms, in the bucket"
                f' {lower}t ≤ {1000 * le:g} ms (le="{series["seriesLabels"]["le"]}") of'
                " grpc_server_handling_seconds, from the exemplar Prometheus keeps for this trace"
            )
    return (
        "CreateOrder latency: no exemplar of this trace in Prometheus — a scrape keeps only the"
        f" newest request of each latency bucket, so under load most requests have none{said}"
    )


def _short(operation: str) -> str:
    return operation.rsplit(".", 1)[-1] if operation.startswith("/") else operation


async def _notifications(shop: Shop, order_id: str) -> list[str]:
    try:
        reply = await shop.notifier.ListNotifications(
            notifier_pb2.ListNotificationsRequest(order_id=order_id), timeout=5, metadata=UNTRACED
        )
    except grpc.aio.AioRpcError as error:
        return [f"notifications: the notifier does not answer ({error.code().name})"]
    found = sorted(reply.notifications, key=lambda n: n.create_time.ToDatetime())
    return [f"notifications ({len(found)}):" if found else "notifications: none"] + [
        f"  {_local(n.create_time.ToDatetime(UTC))}"
        f"  {notifier_pb2.NotificationKind.Name(n.kind).removeprefix('NOTIFICATION_KIND_')}"
        f"  {n.message}"
        for n in found
    ]


async def _read_order(stack: Stack, order_id: str) -> tuple[orders_pb2.Order, list[str]] | int:
    """The order and its notifications, or the exit status when there is none to read."""
    shop = Shop({name: f"127.0.0.1:{stack.ports.grpc[name]}" for name in SERVICES})
    address = f"127.0.0.1:{stack.ports.grpc['orders']}"
    try:
        order = await shop.orders.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order_id), timeout=5, metadata=UNTRACED
        )
        return order, await _notifications(shop, order_id)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            print(f"no order {order_id} in orders at {address}")
            return NOT_FOUND
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            print(f"{order_id!r} is not an order id: {error.details()}")
            return NOT_FOUND
        print(
            f"orders does not answer at {address} ({error.code().name}): is the stack"
            " running? Start it with `make run`."
        )
        return NO_STACK
    finally:
        await shop.close()


async def _traces(
    traces: list[Trace], lines: list[LogLine], jaeger: str, prometheus: Prometheus, colours: bool
) -> list[str]:
    """A section per trace, oldest first: waterfall, link, CreateOrder's bucket, log lines."""
    palette = Palette(colours)

    def shown(found: list[LogLine]) -> str:
        if not found:
            return "log lines: none"
        rows = "\n".join(f"  {render(line, palette, with_trace=False)}" for line in found)
        return f"log lines ({len(found)}):\n{rows}"

    sections = []
    for number, trace in enumerate(sorted(traces, key=lambda t: t.start), 1):
        title = ", ".join(_short(root) for root in trace.roots)
        section = [
            f"── {number}. {title}  {_local(trace.start)}  trace {trace.id}",
            waterfall(trace.raw),
            f"in Jaeger: {trace_url(trace.id, jaeger)}",
        ]
        if CREATE_ORDER in trace.roots:
            section.append(await asyncio.to_thread(_bucket_line, prometheus, trace))
        section.append(shown([line for line in lines if line.trace_id == trace.id]))
        sections.append("\n".join(section))
    elsewhere = [line for line in lines if line.trace_id not in {t.id for t in traces}]
    if elsewhere:
        sections.append(f"── log lines of the order in no trace Jaeger has\n{shown(elsewhere)}")
    return sections


async def story(stack: Stack, order_id: str, colours: bool) -> int:
    read = await _read_order(stack, order_id)
    if isinstance(read, int):
        return read
    order, notifications = read
    parts = ["\n".join(_order_lines(order))]
    jaeger = f"http://127.0.0.1:{stack.ports.jaeger_ui}"
    prometheus = Prometheus(stack.ports.prometheus)
    try:
        traces = [Trace(t) for t in await asyncio.to_thread(find_order_traces, order_id, jaeger)]
    except OSError as error:
        parts.append(f"Jaeger does not answer at {jaeger} ({error}): no traces, only log lines")
        traces = []
    logs = stack.var_dir / "logs"
    if logs.is_dir():
        selection = Selection(id=order_id, trace_ids={t.id for t in traces})
        lines = selection.choose(LogFolder(logs).read())
    else:
        parts.append(f"no logs in {logs}")
        lines = []
    parts += await _traces(traces, lines, jaeger, prometheus, colours)
    parts.append("\n".join(notifications))
    latency = prometheus.graph_url(
        [f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}[1m])))"],
        range_input="30m",
        end=(order.create_time.ToDatetime() + timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S"),
        exemplars=True,
    )
    parts.append(
        "links:"
        f"\n  every trace of the order in Jaeger: {order_search_url(order_id, jaeger)}"
        f"\n  CreateOrder p99 around its creation, with exemplars: {latency}"
    )
    print("\n\n".join(parts))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shop-stack story", description=__doc__.split("\n")[0])
    parser.add_argument("order_id", help="the order's id (a UUID)")
    add_location_arguments(parser)
    args = parser.parse_args(argv)
    colours = colours_wanted(sys.stdout)
    return asyncio.run(story(locate(args.var_dir), args.order_id.strip().lower(), colours))
