"""Benchmark the running shop stack: ghz profiles plus "order confirmed -> notification" latency.

Needs the stack started by `make run` in another terminal; talks to 127.0.0.1 only. Every
phase is bounded in time and in count and stops by itself. See loadtest/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_devstack.procs import StackError
from shop_devstack.stack import Ports, grpc_serving

HOST = "127.0.0.1"  # loopback only, whatever a profile file says
ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
# Default run order: reads first, the write (which leaves Kafka work behind) last.
PREFERRED_ORDER = ("list_products", "get_stock", "get_order", "create_order")
# The same variables and defaults as shop_devstack.stack.Ports (what `make run` listens on).
SERVICE_OF = {
    "shop.orders.v1.OrderService": "orders",
    "shop.inventory.v1.InventoryService": "inventory",
    "shop.notifier.v1.NotifierService": "notifier",
}
WRITE_PROFILES = {"create_order"}  # each call takes one unit of --sku
MAX_ADJUSTMENT = 1_000_000  # the inventory service's AdjustStock limit
MAX_DURATION_S = 3600.0
WARM_UP_S = 30.0  # at most this long for the first notification to show up
PROBE_EVERY_S = 5.0
MAX_PROBES = math.ceil(WARM_UP_S / PROBE_EVERY_S) + 1
E2E_MAX_IN_FLIGHT = 64
CREATE_TIMEOUT_S = 10.0


class BenchError(Exception):
    """Something the user has to fix; the message says what."""


# --------------------------------------------------------------------------- helpers


def parse_duration(text: str) -> float:
    """'10', '10s', '1.5m', '500ms' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10, 10s, 1m)")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    if not 0 < value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_DURATION_S:g}s")
    return value


def bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def bounded_float(low: float, high: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"must be more than {low:g} and at most {high:g}")
        return value

    return parse


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def available_profiles() -> list[str]:
    found = {path.stem for path in PROFILE_DIR.glob("*.json")}
    ordered = [name for name in PREFERRED_ORDER if name in found]
    return ordered + sorted(found - set(ordered))


def load_profile(name: str) -> dict[str, Any]:
    path = PROFILE_DIR / f"{name}.json"
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read profile {path}: {exc}") from exc
    if not isinstance(profile, dict) or not isinstance(profile.get("call"), str):
        raise BenchError(f'profile {path} has no "call"')
    return profile


def service_of(profile: dict[str, Any]) -> str:
    call = str(profile["call"]).replace("/", ".")
    service = call.rsplit(".", 1)[0]
    if service not in SERVICE_OF:
        raise BenchError(f"unknown service in call {profile['call']!r}")
    return SERVICE_OF[service]


def substitute(value: Any, values: dict[str, str]) -> Any:
    """Replaces ${NAME} placeholders in every string of a JSON value."""
    if isinstance(value, str):
        for name, replacement in values.items():
            value = value.replace("${" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [substitute(item, values) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, values) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------- stack access


async def check_health(addresses: dict[str, str]) -> None:
    async def one(name: str, address: str) -> str | None:
        try:
            if await grpc_serving(address):
                return None
            return f"  {name:<10} {address}: health check says NOT_SERVING"
        except grpc.aio.AioRpcError as exc:
            return f"  {name:<10} {address}: {exc.code().name} ({exc.details()})"
        except OSError as exc:
            return f"  {name:<10} {address}: {exc}"

    problems = [p for p in await asyncio.gather(*(one(n, a) for n, a in addresses.items())) if p]
    if problems:
        raise BenchError(
            "the shop stack is not answering on "
            + HOST
            + ":\n"
            + "\n".join(problems)
            + "\nStart it with `make run` in another terminal, wait for the"
            " 'shop is up' banner, then run the benchmark again. (Non-default ports"
            " are read from ORDERS_GRPC_PORT, INVENTORY_GRPC_PORT, NOTIFIER_GRPC_PORT.)"
        )


async def restock(address: str, sku: str, at_least: int) -> inventory_pb2.StockLevel:
    """Raises the available stock of `sku` to at least `at_least` with AdjustStock."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        level = await stub.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=5)
        if level.available >= at_least:
            print(f"[prepare] {sku}: {level.available} available, enough for this run")
            return level
        delta = min(at_least - level.available, MAX_ADJUSTMENT)
        level = await stub.AdjustStock(
            inventory_pb2.AdjustStockRequest(sku=sku, delta=delta, reason="loadtest restock"),
            timeout=5,
        )
        print(f"[prepare] {sku}: restocked by {delta}, now {level.available} available")
        return level


def order_request(customer_id: str, sku: str) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        customer_id=customer_id,
        request_id=str(uuid.uuid4()),
        items=[orders_pb2.OrderItem(sku=sku, quantity=1)],
    )


async def create_one_order(address: str, sku: str, run_id: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        order = await stub.CreateOrder(
            order_request(f"bench-{run_id}", sku), timeout=CREATE_TIMEOUT_S
        )
    print(f"[prepare] created order {order.order_id} for get_order")
    return order.order_id


# --------------------------------------------------------------------------- ghz profiles


@dataclass
class ProfileResult:
    name: str
    ok: bool
    count: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    problem: str = ""


def render_config(
    name: str,
    profile: dict[str, Any],
    *,
    port: int,
    duration_s: float,
    concurrency: int,
    substitutions: dict[str, str],
    out_dir: Path,
) -> tuple[Path, dict[str, Any]]:
    config = dict(profile)
    config["data"] = substitute(profile.get("data", {}), substitutions)
    if left := re.findall(r"\$\{\w+\}", json.dumps(config["data"])):
        raise BenchError(f"profile {name}: nothing to substitute for {sorted(set(left))}")
    config["host"] = f"{HOST}:{port}"
    config["insecure"] = True
    # Bounded twice: by count ("total", kept from the profile) and by time. max-duration
    # (ghz -x) respects "total"; plain "duration" (-z) would ignore it, so drop that.
    config.pop("duration", None)
    config["max-duration"] = f"{duration_s:g}s"
    config["total"] = int(profile.get("total") or 100_000)
    config["concurrency"] = concurrency
    config["connections"] = max(1, min(int(profile.get("connections", 1)), concurrency))
    config["duration-stop"] = profile.get("duration-stop", "wait")
    config["format"] = "json"
    config["output"] = str(out_dir / f"{name}.json")
    rendered = out_dir / f"{name}.ghz.json"
    rendered.write_text(json.dumps(config, indent=2) + "\n")
    return rendered, config


def summarize(name: str, report: dict[str, Any], expected: set[str]) -> ProfileResult:
    latencies = {
        int(item["percentage"]): float(item["latency"]) / 1e6
        for item in report.get("latencyDistribution") or []
        if item.get("percentage")
    }
    statuses = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    count = int(report.get("count") or 0)
    result = ProfileResult(
        name=name,
        ok=True,
        count=count,
        rps=float(report.get("rps") or 0.0),
        p50_ms=latencies.get(50),
        p95_ms=latencies.get(95),
        p99_ms=latencies.get(99),
        errors=sum(int(v) for v in (report.get("errorDistribution") or {}).values()),
        statuses=statuses,
    )
    unexpected = {code: n for code, n in statuses.items() if code not in expected}
    if count == 0:
        result.ok, result.problem = False, "no requests completed"
    elif unexpected:
        top = Counter({str(k): int(v) for k, v in (report.get("errorDistribution") or {}).items()})
        lines = [f"{n} x {message}" for message, n in top.most_common(3)]
        result.ok = False
        result.problem = (
            f"unexpected status codes {unexpected} (expected only {sorted(expected)});"
            " most frequent errors:\n      " + "\n      ".join(lines)
        )
    return result


def run_profile(
    name: str,
    *,
    ghz: Path,
    ports: dict[str, int],
    duration_s: float,
    concurrency: int,
    substitutions: dict[str, str],
    out_dir: Path,
) -> ProfileResult:
    profile = load_profile(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered, config = render_config(
        name,
        profile,
        port=ports[service_of(profile)],
        duration_s=duration_s,
        concurrency=concurrency,
        substitutions=substitutions,
        out_dir=out_dir,
    )
    report_path = out_dir / f"{name}.json"
    report_path.unlink(missing_ok=True)
    try:
        call_timeout = parse_duration(str(profile.get("timeout", "20s")))
    except argparse.ArgumentTypeError:
        call_timeout = 60.0  # a timeout this script cannot parse (e.g. "1m30s"): be generous
    limit = duration_s + call_timeout + 60  # ghz's own bound plus slack for start and exit
    print(
        f"[ghz] {name}: {profile['call']} for at most {duration_s:g}s"
        f" or {config['total']} calls, concurrency {concurrency} …",
        flush=True,
    )
    try:
        proc = subprocess.run(
            [str(ghz), f"--config={rendered}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProfileResult(name, ok=False, problem=f"ghz did not finish in {limit:g}s; killed")
    if proc.returncode != 0 or not report_path.exists():
        output = (proc.stderr or proc.stdout).strip() or "(no output)"
        return ProfileResult(
            name, ok=False, problem=f"ghz exited with {proc.returncode}: {output[-800:]}"
        )
    try:
        report = json.loads(report_path.read_text())
    except ValueError as exc:
        return ProfileResult(name, ok=False, problem=f"cannot parse {report_path}: {exc}")
    tags = profile.get("tags") or {}
    expected = {c.strip() for c in str(tags.get("expected_status", "OK")).split(",") if c.strip()}
    return summarize(name, report, expected)


def print_profile_table(results: Sequence[ProfileResult]) -> None:
    header = (
        f"{'profile':<15}{'requests':>10}{'rps':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}  status codes"
    )
    print("\n" + header)
    print("-" * (len(header) + 12))
    for r in results:
        codes = ", ".join(f"{code}={n}" for code, n in sorted(r.statuses.items())) or "-"
        print(
            f"{r.name:<15}{r.count:>10}{r.rps:>10.1f}{fmt_ms(r.p50_ms):>9}{fmt_ms(r.p95_ms):>9}"
            f"{fmt_ms(r.p99_ms):>9}{r.errors:>8}  {codes}"
        )
        if r.problem:
            print(f"    FAILED: {r.problem}")


# --------------------------------------------------------------------------- end to end


@dataclass
class E2EResult:
    customer: str
    placed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    send_seconds: float = 0.0
    stream_latencies_ms: list[float] = field(default_factory=list)
    server_latencies_ms: list[float] = field(default_factory=list)
    create_latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    stream_error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing and not self.stream_error


class _Stream:
    """Reads StreamNotifications and notes when each ORDER_CONFIRMED arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # order_id -> perf_counter() at arrival
        self.stored: dict[str, float] = {}  # order_id -> notification.create_time (unix s)
        self.changed = asyncio.Event()

    async def read(
        self,
        call: grpc.aio.UnaryStreamCall[
            notifier_pb2.StreamNotificationsRequest, notifier_pb2.Notification
        ],
    ) -> None:
        async for notification in call:
            now = time.perf_counter()
            if (
                notification.kind == notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED
                and notification.order_id not in self.arrived
            ):
                self.arrived[notification.order_id] = now
                self.stored[notification.order_id] = notification.create_time.ToNanoseconds() / 1e9
                self.changed.set()

    async def wait_change(self, seconds: float) -> None:
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), seconds)


def _stream_problem(reader: asyncio.Task[None]) -> str:
    if not reader.done():
        return ""
    if reader.cancelled():
        return "notification stream was cancelled"
    exc = reader.exception()
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"notification stream ended: {exc.code().name} ({exc.details()})"
    if exc is not None:
        return f"notification stream failed: {exc!r}"
    return "notification stream ended early"


async def measure_e2e(
    addresses: dict[str, str], sku: str, count: int, rate: float, settle_s: float
) -> E2EResult:
    loop = asyncio.get_running_loop()
    result = E2EResult(customer=f"bench-e2e-{uuid.uuid4().hex[:12]}")
    stream = _Stream()
    returned: dict[str, float] = {}  # order_id -> perf_counter() when CreateOrder returned
    confirmed: dict[str, float] = {}  # order_id -> order.create_time (unix s)
    bound = WARM_UP_S + count / rate + CREATE_TIMEOUT_S + settle_s + 30
    async with (
        grpc.aio.insecure_channel(addresses["orders"]) as orders_channel,
        grpc.aio.insecure_channel(addresses["notifier"]) as notifier_channel,
    ):
        orders = orders_pb2_grpc.OrderServiceStub(orders_channel)
        notifier = notifier_pb2_grpc.NotifierServiceStub(notifier_channel)
        call = notifier.StreamNotifications(
            notifier_pb2.StreamNotificationsRequest(customer_id=result.customer), timeout=bound
        )
        reader = asyncio.create_task(stream.read(call))
        try:
            # 1. Warm up: the subscription is live once a probe order's notification arrives.
            await asyncio.sleep(0.3)
            probes: list[str] = []
            deadline = loop.time() + WARM_UP_S
            next_probe = loop.time()
            while not any(p in stream.arrived for p in probes):
                if problem := _stream_problem(reader):
                    raise BenchError(problem)
                if loop.time() > deadline:
                    raise BenchError(
                        f"no notification arrived on the stream within {WARM_UP_S:g}s of a"
                        " probe order: is the notifier consuming from Kafka? See"
                        " var/logs/notifier.log and var/logs/orders.log"
                    )
                if loop.time() >= next_probe and len(probes) < MAX_PROBES:
                    probe = await orders.CreateOrder(
                        order_request(result.customer, sku), timeout=CREATE_TIMEOUT_S
                    )
                    probes.append(probe.order_id)
                    next_probe = loop.time() + PROBE_EVERY_S
                await stream.wait_change(0.2)
            print(f"[e2e] stream is live (after {len(probes)} probe order(s))", flush=True)

            # 2. Place `count` orders on a fixed schedule (open loop), a bounded number in flight.
            in_flight = asyncio.Semaphore(E2E_MAX_IN_FLIGHT)

            async def place() -> None:
                try:
                    sent = time.perf_counter()
                    order = await orders.CreateOrder(
                        order_request(result.customer, sku), timeout=CREATE_TIMEOUT_S
                    )
                    done = time.perf_counter()
                    returned[order.order_id] = done
                    confirmed[order.order_id] = order.create_time.ToNanoseconds() / 1e9
                    result.create_latencies_ms.append((done - sent) * 1000)
                except grpc.aio.AioRpcError as exc:
                    result.failures[exc.code().name] += 1
                finally:
                    in_flight.release()

            tasks: list[asyncio.Task[None]] = []
            start = loop.time()
            for i in range(count):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await in_flight.acquire()
                tasks.append(asyncio.create_task(place()))
            result.send_seconds = loop.time() - start
            result.placed = len(tasks)
            await asyncio.gather(*tasks)

            # 3. Wait (bounded) for the remaining notifications.
            deadline = loop.time() + settle_s
            while loop.time() < deadline and not reader.done():
                if all(order_id in stream.arrived for order_id in returned):
                    break
                await stream.wait_change(0.2)
            result.stream_error = _stream_problem(reader)
        finally:
            call.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader

    for order_id, returned_at in returned.items():
        if order_id not in stream.arrived:
            result.missing += 1
            continue
        result.stream_latencies_ms.append((stream.arrived[order_id] - returned_at) * 1000)
        result.server_latencies_ms.append((stream.stored[order_id] - confirmed[order_id]) * 1000)
    for values in (
        result.stream_latencies_ms,
        result.server_latencies_ms,
        result.create_latencies_ms,
    ):
        values.sort()
    return result


def print_e2e(result: E2EResult, count: int, rate: float) -> None:
    # The schedule spans (placed - 1) intervals.
    achieved = (result.placed - 1) / result.send_seconds if result.send_seconds > 0 else rate
    received = len(result.stream_latencies_ms)
    print(
        f"\norder confirmed -> notification ({count} orders at {rate:g}/s target,"
        f" {achieved:.1f}/s achieved, customer {result.customer})"
    )
    header = f"{'measure':<47}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    rows = (
        ("CreateOrder call (client)", result.create_latencies_ms),
        ("CreateOrder returned -> arrived on stream", result.stream_latencies_ms),
        ("order create_time -> notification create_time", result.server_latencies_ms),
    )
    for label, values in rows:
        print(
            f"{label:<47}{len(values):>6}{fmt_ms(percentile(values, 50)):>9}"
            f"{fmt_ms(percentile(values, 95)):>9}{fmt_ms(percentile(values, 99)):>9}"
            f"{fmt_ms(values[-1] if values else None):>9}"
        )
    placed_ok = len(result.create_latencies_ms)
    print(f"orders confirmed {placed_ok}, notifications received {received}")
    if result.failures:
        print(f"    FAILED: CreateOrder errors {dict(result.failures)}")
    if result.missing:
        print(f"    FAILED: {result.missing} notification(s) did not arrive in time")
    if result.stream_error:
        print(f"    FAILED: {result.stream_error}")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    names = available_profiles()
    parser = argparse.ArgumentParser(
        prog="loadtest/bench.py",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=["all"],
        metavar="NAME",
        help=f"ghz profiles to run, space- or comma-separated, from {names};"
        " 'all' runs every one, 'none' runs no profile",
    )
    parser.add_argument(
        "--duration",
        type=parse_duration,
        default=10.0,
        help="time limit per profile (10, 10s, 1m); each profile also stops at its 'total'",
    )
    parser.add_argument(
        "--concurrency", type=bounded_int(1, 1000), default=16, help="ghz workers per profile"
    )
    parser.add_argument("--skip-e2e", action="store_true", help="skip the notification latency")
    parser.add_argument(
        "--e2e-orders", type=bounded_int(1, 10_000), default=200, help="orders the e2e part places"
    )
    parser.add_argument(
        "--e2e-rate", type=bounded_float(0, 500), default=50.0, help="e2e orders per second"
    )
    parser.add_argument(
        "--e2e-timeout",
        type=parse_duration,
        default=30.0,
        help="how long to wait for notifications after the last order returned",
    )
    parser.add_argument(
        "--sku", default="SOCKS-3P", help="SKU that create_order and the e2e orders buy"
    )
    parser.add_argument(
        "--ghz", type=Path, default=ROOT / ".tools" / "bin" / "ghz", help="ghz binary"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=ROOT / "var" / "bench", help="where reports go"
    )
    args = parser.parse_args(argv)
    chosen = [n for item in args.profiles for n in item.split(",") if n.strip()]
    if chosen == ["none"]:
        chosen = []
    elif chosen == ["all"]:
        chosen = names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown profile(s) {unknown}; choose from {names} or 'none'")
    args.profiles = [n for n in names if n in chosen]  # known order, no duplicates
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except BenchError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


async def run(args: argparse.Namespace) -> int:
    try:
        grpc_ports = Ports.from_env().grpc
    except StackError as exc:
        raise BenchError(str(exc)) from exc
    addresses = {name: f"{HOST}:{port}" for name, port in grpc_ports.items()}
    if args.profiles and not args.ghz.exists():
        raise BenchError(f"{args.ghz} is missing: run `deploy/bootstrap.sh ghz`")

    await check_health(addresses)
    print("[health] orders, inventory and notifier are SERVING")

    run_id = uuid.uuid4().hex[:8]
    substitutions = {"SKU": args.sku}
    profiles = {name: load_profile(name) for name in args.profiles}
    # Every order (create_order calls, e2e orders and probes, get_order's one) takes one unit.
    orders_needed = sum(
        int(p.get("total") or 0) for n, p in profiles.items() if n in WRITE_PROFILES
    )
    orders_needed += 0 if args.skip_e2e else args.e2e_orders + MAX_PROBES
    orders_needed += 1 if "get_order" in profiles else 0
    try:
        if orders_needed:
            await restock(addresses["inventory"], args.sku, orders_needed + 100)
        if "get_order" in profiles:
            substitutions["ORDER_ID"] = await create_one_order(
                addresses["orders"], args.sku, run_id
            )
    except grpc.aio.AioRpcError as exc:
        raise BenchError(
            f"preparing data failed: {exc.code().name} ({exc.details()})"
            f" — does SKU {args.sku} exist (see --sku)?"
        ) from exc

    failed = False
    # The e2e part runs first, on a quiet system: after create_order the notifier still has
    # a Kafka backlog to work through, which would be measured instead.
    if not args.skip_e2e:
        print(
            f"[e2e] placing {args.e2e_orders} orders at {args.e2e_rate:g}/s with"
            " StreamNotifications open …",
            flush=True,
        )
        try:
            e2e = await measure_e2e(
                addresses, args.sku, args.e2e_orders, args.e2e_rate, args.e2e_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise BenchError(f"probe order failed: {exc.code().name} ({exc.details()})") from exc
        print_e2e(e2e, args.e2e_orders, args.e2e_rate)
        failed |= not e2e.ok

    if args.profiles:
        out_dir: Path = args.out_dir.absolute()
        results = []
        for index, name in enumerate(args.profiles):
            if index:
                await asyncio.sleep(1)  # let the previous run's stragglers finish
            results.append(
                await asyncio.to_thread(
                    run_profile,
                    name,
                    ghz=args.ghz,
                    ports=grpc_ports,
                    duration_s=args.duration,
                    concurrency=args.concurrency,
                    substitutions=substitutions,
                    out_dir=out_dir,
                )
            )
        print_profile_table(results)
        print(f"\nghz reports (JSON) and the exact configs used are in {out_dir}/")
        failed |= not all(r.ok for r in results)

    print("\nbenchmark FAILED (see above)" if failed else "\nbenchmark finished without errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
