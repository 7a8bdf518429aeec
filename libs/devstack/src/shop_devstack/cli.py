"""`python -m shop_devstack run`: the whole system in the foreground, as `make run` does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from shop_devstack.certs import describe, ensure_certs
from shop_devstack.chaos.run import main as chaos_main
from shop_devstack.demo import main as demo_main
from shop_devstack.fuzz.run import main as fuzz_main
from shop_devstack.logs import main as logs_main
from shop_devstack.logs import readable
from shop_devstack.procs import StackError, as_is
from shop_devstack.profile import main as profile_main
from shop_devstack.prometheus import Prometheus
from shop_devstack.running import default_var_dir
from shop_devstack.stack import (
    SERVICES,
    Ports,
    Stack,
    Supervisor,
    Topology,
    certs_dir,
    start_stack,
    tls_from_env,
    topology_from_env,
)
from shop_devstack.status import main as status_main
from shop_devstack.story import main as story_main
from shop_devstack.trace import show

# The RED recording rules, one graph each: requests/s, error ratio, p99 latency.
RED_RULES = (
    "shop:grpc_server_requests:rate1m",
    "shop:grpc_server_errors:ratio_rate5m",
    "shop:grpc_server_handling_seconds:p99_5m",
)


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


def grpcurl_flags(tls_dir: Path | None) -> str:
    """How grpcurl (and ghz) reach the stack: -plaintext, or the client's certificate."""
    if tls_dir is None:
        return "-plaintext"
    with contextlib.suppress(ValueError):
        tls_dir = tls_dir.relative_to(Path.cwd())
    return f"-cacert {tls_dir}/ca.pem -cert {tls_dir}/client.pem -key {tls_dir}/client-key.pem"


def _tls_lines(stack: Stack) -> list[str]:
    if stack.tls_dir is None:
        return []
    return [
        f"  tls         mutual: every gRPC server asks for a certificate signed by"
        f" {stack.tls_dir}/ca.pem",
        "              (clients: SHOP_TLS=1 make demo / make bench; /metrics and Kafka stay"
        " plaintext)",
    ]


def _banner(stack: Stack, seconds: float) -> str:
    ports = stack.ports
    g = ports.grpc
    topology = stack.topology
    flags = grpcurl_flags(stack.tls_dir)
    switch = "SHOP_TLS=1 " if stack.tls_dir else ""
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
        *_tls_lines(stack),
        *infra,
        _jaeger_line(ports, stack.jaeger_ui_assets),
        f"  prometheus  http://127.0.0.1:{ports.prometheus}",
        f"              RED graphs: {Prometheus(ports.prometheus).graph_url(list(RED_RULES))}",
        "",
        "Try:",
        f"  {switch + 'make demo':<32} (a few orders, then the link to one's trace)",
        "  make trace ID=<order id>         (its traces as a waterfall, with UI links)",
        "  make story ID=<order id>         (its state, traces, log lines and notifications)",
        "  make logs                        (every process's log, merged; SERVICE= LEVEL= ID=)",
        "  make status                      (processes, health, RED, lag, outbox; WATCH=1)",
        f"  .tools/bin/grpcurl {flags} 127.0.0.1:{g['orders']} list",
        f"  .tools/bin/grpcurl {flags} 127.0.0.1:{g['inventory']} grpc.health.v1.Health/Check",
        f"  .tools/bin/grpcurl {flags} -d '{{}}' 127.0.0.1:{g['inventory']}"
        " shop.inventory.v1.InventoryService/ListProducts",
        "",
    ]
    return "\n".join(lines)


async def run(var_dir: Path, topology: Topology, tls_dir: Path | None) -> int:
    started = time.monotonic()
    stack = Stack(var_dir, Ports.from_env(), topology=topology, tls_dir=tls_dir)
    # The services write JSON lines (they see a pipe), which is what var/logs keeps for
    # `make logs` and `make story`; a terminal shows them readable.
    supervisor = Supervisor(var_dir, sys.stdout, readable if sys.stdout.isatty() else as_is)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if tls_dir is not None:
            print(f"[run] SHOP_TLS=1: {describe(tls_dir, stack.prepare_certs())}", flush=True)
        starting = asyncio.ensure_future(
            start_stack(
                stack,
                supervisor,
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
    certs_cmd = sub.add_parser(
        "certs", help="make the local CA and certificates SHOP_TLS=1 uses (those missing)"
    )
    certs_cmd.add_argument(
        "--dir", type=Path, default=None, help="default: SHOP_TLS_DIR or var/certs"
    )
    sub.add_parser("demo", help="place a few orders against the running system")
    sub.add_parser("profile", help="a py-spy flame graph of a running service under load")
    sub.add_parser("chaos", help="faults under load on a stack of its own, then a verdict")
    sub.add_parser("story", help="one order's state, traces, log lines and notifications")
    sub.add_parser("logs", help="the running stack's logs, merged and filtered")
    sub.add_parser("status", help="processes, health, RED metrics, lag, outbox, dead letters")
    sub.add_parser("fuzz", help="hostile requests and poison events on a stack of its own")
    args, rest = parser.parse_known_args()
    commands = {
        "profile": profile_main,
        "chaos": chaos_main,
        "fuzz": fuzz_main,
        "story": story_main,
        "logs": logs_main,
        "status": status_main,
    }
    if args.command in commands:
        try:
            sys.exit(commands[args.command](rest))
        except StackError as exc:
            sys.exit(f"error: {exc}")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "certs":
        folder = (args.dir or certs_dir()).resolve()
        print(describe(folder, ensure_certs(folder, SERVICES)))
        sys.exit(0)
    if args.command == "demo":
        sys.exit(demo_main())
    if args.command == "trace":
        sys.exit(show(args.id))
    try:
        topology = topology_from_env()
        tls_dir = certs_dir() if tls_from_env() else None
    except StackError as exc:
        sys.exit(f"[run] error: {exc}")
    var_dir = (args.var_dir or default_var_dir(topology)).resolve()
    sys.exit(asyncio.run(run(var_dir, topology, tls_dir)))
