"""`python -m shop_devstack chaos`: start a stack of its own on free ports, place orders while
the faults happen, then judge. Exits 1 on any breach."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc

from shop_devstack.chaos.faults import Chaos, schedule
from shop_devstack.chaos.load import Ledger, LoadClient
from shop_devstack.chaos.verdict import Check, came_back, judge
from shop_devstack.procs import StackError
from shop_devstack.stack import (
    TOPOLOGIES,
    Ports,
    Stack,
    Supervisor,
    repo_root,
    start_stack,
    tls_from_env,
)

SETTLE_WITHIN = 60.0
SEED_UNITS = 100_000  # enough stock that no order is refused for want of it


def say(message: str) -> None:
    print(message, flush=True)


async def seed_stock(stack: Stack) -> dict[str, inventory_pb2.StockLevel]:
    async with stack.channel("inventory") as channel:
        inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
        products = await inventory.ListProducts(
            inventory_pb2.ListProductsRequest(page_size=100), timeout=10
        )
        levels = {}
        for product in products.products:
            levels[product.sku] = await inventory.AdjustStock(
                inventory_pb2.AdjustStockRequest(
                    sku=product.sku, delta=SEED_UNITS, reason="chaos seed"
                ),
                timeout=10,
            )
        return levels


async def chaos(
    topology_name: str, rate: float, gap: float, var_root: Path, *, tls: bool = False
) -> int:
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    var_dir = var_root / run_id
    # SHOP_TLS=1: mutual TLS everywhere, with a CA of the run's own in its folder.
    tls_dir = var_dir / "certs" if tls else None
    stack = Stack(var_dir, Ports.free(), topology=TOPOLOGIES[topology_name], tls_dir=tls_dir)
    supervisor = Supervisor(var_dir, out=None)  # the processes' output: var_dir/logs/
    stop_supervising = asyncio.Event()
    say(
        f"[chaos] run {run_id} on the {topology_name} topology"
        f"{' over mutual TLS' if tls else ''}; logs in {var_dir / 'logs'}"
    )
    try:
        await start_stack(stack, supervisor, announce=lambda n: say(f"[chaos] starting {n} …"))
        supervising = asyncio.create_task(supervisor.supervise(stop_supervising))
        initial = await seed_stock(stack)
        ledger = Ledger()
        client = LoadClient(
            stack.grpc_target("orders"), sorted(initial), ledger, rate=rate, tls=stack.client_tls
        )
        runner = Chaos(stack, supervisor, ledger, say=say)
        stop_load = asyncio.Event()
        load = asyncio.create_task(client.run(stop_load))
        say(f"[chaos] placing {rate:.0f} orders/s, 20 % of them cancelled")
        await asyncio.sleep(gap)
        for name, fault in schedule(stack):
            await runner.inject(name, functools.partial(fault, runner))
            await asyncio.sleep(gap)
        stop_load.set()
        await load
        load_seconds = runner.now()
        since_last_fault = load_seconds - runner.records[-1].lifted_at
        say("[chaos] load stopped; waiting for the system to settle …")
        checks, settle_seconds = await judge(
            stack, ledger, initial, max(SETTLE_WITHIN - since_last_fault, 0.0)
        )
        checks.append(came_back(runner.records, supervisor.running))
        stop_supervising.set()
        await supervising
        report = _report(run_id, topology_name, rate, runner, ledger, checks, supervisor)
        report["load_seconds"] = round(load_seconds, 1)
        report["settled_seconds_after_load"] = (
            None if settle_seconds is None else round(settle_seconds, 1)
        )
        (var_dir / "verdict.json").write_text(json.dumps(report, indent=2) + "\n")
        _print(report, var_dir / "verdict.json")
        return 0 if report["ok"] else 1
    except StackError as exc:
        say(f"[chaos] error: {exc}")
        return 2
    finally:
        stop_supervising.set()
        await supervisor.stop_all()


def _report(
    run_id: str,
    topology: str,
    rate: float,
    runner: Chaos,
    ledger: Ledger,
    checks: list[Check],
    supervisor: Supervisor,
) -> dict[str, Any]:
    return {
        "run": run_id,
        "topology": topology,
        "rate_per_second": rate,
        "ok": all(check.ok for check in checks),
        "checks": [check.as_dict() for check in checks],
        "faults": [
            {
                "fault": record.name,
                "at_seconds": round(record.injected_at, 1),
                "recovery_seconds": (
                    None if record.recovery_seconds is None else round(record.recovery_seconds, 1)
                ),
                "client_errors": record.client_errors,
            }
            for record in runner.records
        ],
        "requests": ledger.figures(),
        "restarts": supervisor.restarts(),
    }


def _print(report: dict[str, Any], path: Path) -> None:
    say("")
    say(f"{'fault':<72} {'at':>7} {'recovery':>9} {'errors':>7}")
    for fault in report["faults"]:
        recovery = fault["recovery_seconds"]
        shown = "never" if recovery is None else f"{recovery:.1f} s"
        say(
            f"{fault['fault']:<72} {fault['at_seconds']:>5.1f} s {shown:>9}"
            f" {fault['client_errors']:>7}"
        )
    say("recovery: from the fault's end until the process serves again and a new order goes")
    say("through at the first attempt; errors: answers the client retried meanwhile")
    requests = report["requests"]
    say("")
    say(
        f"orders acknowledged {requests['orders_placed']},"
        f" cancelled {requests['orders_cancelled']},"
        f" client retries {requests['client_retries']},"
        f" abandoned {requests['abandoned_requests']}"
    )
    say("answers: " + ", ".join(f"{k} {v}" for k, v in requests["answers"].items()))
    say(
        "restarts by the supervisor: "
        + (", ".join(f"{k} {v}" for k, v in report["restarts"].items()) or "none")
    )
    say("")
    for check in report["checks"]:
        mark = "PASS" if check["ok"] else "FAIL"
        say(f"{mark}  {check['check']}: {check['detail']}")
        for example in check["examples"]:
            say(f"        {example}")
        if check["breaches"] > len(check["examples"]):
            say(f"        … {check['breaches']} in all")
    say("")
    settled = report["settled_seconds_after_load"]
    if settled is not None:
        say(f"all checks passed {settled:.1f} s after the load stopped")
    say(f"verdict: {'nothing lost' if report['ok'] else 'BREACH'}  ({path})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shop-chaos", description=__doc__)
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES), default="cluster")
    parser.add_argument("--rate", type=float, default=10.0, help="orders per second")
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between faults")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 200 or not 1 <= args.gap <= 120:
        parser.error("--rate must be in (0, 200] and --gap in [1, 120]")
    try:
        tls = tls_from_env()
    except StackError as exc:
        say(f"[chaos] error: {exc}")
        return 2
    started = time.monotonic()
    code = asyncio.run(
        chaos(args.topology, args.rate, args.gap, repo_root() / "var" / "chaos", tls=tls)
    )
    say(f"[chaos] done in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
