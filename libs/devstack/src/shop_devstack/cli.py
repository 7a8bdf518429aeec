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

from shop_devstack.demo import main as demo_main
from shop_devstack.procs import StackError
from shop_devstack.profile import main as profile_main
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor, repo_root
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


def _banner(ports: Ports, seconds: float, ui_assets: Path | None) -> str:
    g = ports.grpc
    lines = [
        "",
        f"shop is up in {seconds:.1f} s — Ctrl-C stops everything.",
        "",
        f"  orders      grpc 127.0.0.1:{g['orders']}     metrics http://127.0.0.1:{ports.metrics['orders']}/metrics",
        f"  inventory   grpc 127.0.0.1:{g['inventory']}     metrics http://127.0.0.1:{ports.metrics['inventory']}/metrics",
        f"  notifier    grpc 127.0.0.1:{g['notifier']}     metrics http://127.0.0.1:{ports.metrics['notifier']}/metrics",
        f"  kafka       127.0.0.1:{ports.kafka}",
        _jaeger_line(ports, ui_assets),
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


async def run(var_dir: Path) -> int:
    started = time.monotonic()
    ports = Ports.from_env()
    stack = Stack(var_dir, ports)
    supervisor = Supervisor(var_dir, sys.stdout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Readable lines on a terminal (the services see a pipe, not the TTY), else JSON.
        log_format = (
            {}
            if "LOG_FORMAT" in os.environ or not sys.stdout.isatty()
            else {"LOG_FORMAT": "console"}
        )
        specs_without_kafka = [
            stack.jaeger(),
            stack.prometheus(),
            *(stack.service(name, log_format) for name in SERVICES),
        ]
        supervisor.check_ports(specs_without_kafka)
        kafka = await stack.kafka()
        supervisor.check_ports([kafka])
        for spec in [kafka, *specs_without_kafka]:
            step = asyncio.ensure_future(supervisor.start(spec))
            print(f"[run] starting {spec.name} …", flush=True)
            waiter = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if step not in done:
                step.cancel()
                print("[run] interrupted while starting; stopping", flush=True)
                return 130
            step.result()
        print(_banner(ports, time.monotonic() - started, stack.jaeger_ui_assets), flush=True)
        while not stop.is_set():
            if (dead := supervisor.first_exited()) is not None:
                code = dead.proc.returncode if dead.proc else "?"
                print(
                    f"[run] {dead.spec.name} exited with code {code}; stopping the rest",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            await asyncio.sleep(0.5)
        print("[run] stopping …", flush=True)
        return 0
    except StackError as exc:
        print(f"[run] error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await supervisor.stop_all()
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
    args, rest = parser.parse_known_args()
    if args.command == "profile":
        sys.exit(profile_main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        sys.exit(demo_main())
    if args.command == "trace":
        sys.exit(show(args.id))
    var_dir = (args.var_dir or repo_root() / "var").resolve()
    sys.exit(asyncio.run(run(var_dir)))
