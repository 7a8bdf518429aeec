"""`python -m shop_devstack run`: the whole system in the foreground, as `make run` does."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path

from shop_devstack.chaos.run import main as chaos_main
from shop_devstack.demo import main as demo_main
from shop_devstack.fuzz.run import main as fuzz_main
from shop_devstack.procs import StackError
from shop_devstack.profile import main as profile_main
from shop_devstack.stack import (
    SERVICES,
    Ports,
    Stack,
    Supervisor,
    Topology,
    repo_root,
    start_stack,
    topology_from_env,
)
from shop_devstack.trace import show

# The RED recording rules, one graph each: requests/s, error ratio, p99 latency.
RED_RULES = (
    "shop:grpc_server_requests:rate1m",
    "shop:grpc_server_errors:ratio_rate5m",
    "shop:grpc_server_handling_seconds:p99_5m",
)


def prometheus_red_graph_url(port: int) -> str:
    panels: dict[str, str] = {}
    for index, rule in enumerate(RED_RULES):
        panels |= {f"g{index}.expr": rule, f"g{index}.tab": "0", f"g{index}.range_input": "15m"}
    return f"http://127.0.0.1:{port}/graph?{urllib.parse.urlencode(panels, safe=':')}"


def _jaeger_line(ports: Ports, ui_assets: Path | None) -> str:
    url = f"http://127.0.0.1:{ports.jaeger_ui}"
    if ui_assets is not None:
        return f"  jaeger      {url}  (search service=orders, or tags shop.order_id=<order id>)"
    return (
        f"  jaeger      {url}  API only (/api/traces): the web UI's files are missing, so it"
        " shows a placeholder.\n              Get them: SHOP_MIRROR=<folder with the tarball>"
        " deploy/bootstrap.sh jaeger-ui (README: Troubleshooting)"
    )


def _service_lines(stack: Stack) -> list[str]:
    lines = []
    for name in SERVICES:
        for replica in stack.replicas:
            grpc_port, metrics_port = stack.ports.replica(name, replica)
            lines.append(
                f"  {stack.topology.instance_name(name, replica):<11} grpc 127.0.0.1:{grpc_port}"
                f"     metrics http://127.0.0.1:{metrics_port}/metrics"
            )
    return lines


def _banner(stack: Stack, seconds: float) -> str:
    ports = stack.ports
    g = ports.grpc
    topology = stack.topology
    infra = [f"  kafka       {stack.kafka_bootstrap}"]
    if topology.brokers > 1:
        infra[0] += (
            f"  ({topology.brokers} brokers, replication {topology.replication},"
            f" min.insync.replicas {topology.min_insync_replicas})"
        )
    if topology.postgres:
        infra.append(f"  postgres    {stack.database_url('<service>')}")
    lines = [
        "",
        f"shop is up in {seconds:.1f} s{' as a cluster' if topology.replicas > 1 else ''}"
        " — Ctrl-C stops everything; a process that dies is restarted.",
        "",
        *_service_lines(stack),
        *infra,
        _jaeger_line(ports, stack.jaeger_ui_assets),
        f"  prometheus  http://127.0.0.1:{ports.prometheus}",
        f"              RED graphs: {prometheus_red_graph_url(ports.prometheus)}",
        "",
        "Try:",
        "  make demo                        (a few orders, then the link to one's trace)",
        "  make trace ID=<order id>         (its traces as a waterfall, with UI links)",
        f"  .tools/bin/grpcurl -plaintext 127.0.0.1:{g['orders']} list",
        f"  .tools/bin/grpcurl -plaintext 127.0.0.1:{g['inventory']} grpc.health.v1.Health/Check",
        f"  .tools/bin/grpcurl -plaintext -d '{{}}' 127.0.0.1:{g['inventory']}"
        " shop.inventory.v1.InventoryService/ListProducts",
        "",
    ]
    return "\n".join(lines)


async def run(var_dir: Path, topology: Topology) -> int:
    started = time.monotonic()
    stack = Stack(var_dir, Ports.from_env(), topology=topology)
    supervisor = Supervisor(var_dir, sys.stdout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Readable lines on a terminal (the services see a pipe, not the TTY), else JSON.
    log_format = (
        {} if "LOG_FORMAT" in os.environ or not sys.stdout.isatty() else {"LOG_FORMAT": "console"}
    )
    try:
        starting = asyncio.ensure_future(
            start_stack(
                stack,
                supervisor,
                log_format,
                announce=lambda names: print(f"[run] starting {names} …", flush=True),
            )
        )
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not starting.done():
            starting.cancel()
            print("[run] interrupted while starting; stopping", flush=True)
            return 130
        starting.result()
        print(_banner(stack, time.monotonic() - started), flush=True)
        await supervisor.supervise(stop)
        print("[run] stopping …", flush=True)
        return 0
    except StackError as exc:
        print(f"[run] error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        restarts = supervisor.restarts()
        await supervisor.stop_all()
        if restarts:
            summary = ", ".join(f"{name} {count}" for name, count in restarts.items())
            print(f"[run] restarts: {summary}", flush=True)
        print("[run] all processes stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="shop-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="start everything in the foreground")
    run_cmd.add_argument("--var-dir", type=Path, default=None, help="default: <repo>/var")
    trace_cmd = sub.add_parser("trace", help="print a trace (by trace id or order id)")
    trace_cmd.add_argument("id", help="a trace id (32 hex digits) or an order id")
    sub.add_parser("demo", help="place a few orders against the running system")
    sub.add_parser("profile", help="a py-spy flame graph of a running service under load")
    sub.add_parser("chaos", help="faults under load on a stack of its own, then a verdict")
    sub.add_parser("fuzz", help="hostile requests and poison events on a stack of its own")
    args, rest = parser.parse_known_args()
    if args.command == "profile":
        sys.exit(profile_main(rest))
    if args.command == "chaos":
        sys.exit(chaos_main(rest))
    if args.command == "fuzz":
        sys.exit(fuzz_main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        sys.exit(demo_main())
    if args.command == "trace":
        sys.exit(show(args.id))
    try:
        topology = topology_from_env()
    except StackError as exc:
        sys.exit(f"[run] error: {exc}")
    default_var = repo_root() / ("var" if topology.name == "single" else f"var/{topology.name}")
    var_dir = (args.var_dir or default_var).resolve()
    sys.exit(asyncio.run(run(var_dir, topology)))
