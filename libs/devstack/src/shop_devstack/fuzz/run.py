"""`python -m shop_devstack fuzz`: start a stack of its own on free ports, send hostile
requests to every RPC and poison events to every consumed topic, then judge. Exits 1 on
any breach.

Loopback only, bounded in count (`--requests`) and time (`--time-limit`); it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shop_devstack.chaos.verdict import Check
from shop_devstack.fuzz import verdict
from shop_devstack.fuzz.grpc_calls import CALL_TIMEOUT, GrpcFuzzer, Tally
from shop_devstack.fuzz.poison import PoisonReport, poison_kafka
from shop_devstack.fuzz.requests import Method, methods
from shop_devstack.procs import StackError
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor, repo_root, start_stack


def say(message: str) -> None:
    print(message, flush=True)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise StackError(f"no VmRSS for pid {pid}")


async def health_problem(address: str, names: list[str]) -> str | None:
    """None when health says SERVING for the server as a whole and for each of its services;
    else what it said."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        for name in ["", *names]:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            except grpc.aio.AioRpcError as error:
                return f"health of {name or 'the server'}: {error.code().name} {error.details()}"
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                return f"{name or 'the server'} is {status}"
    return None


async def fuzz(args: argparse.Namespace, var_root: Path) -> int:
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    var_dir = var_root / run_id
    stack = Stack(var_dir, Ports.free())
    supervisor = Supervisor(var_dir, out=None)  # the processes' output: var_dir/logs/
    say(f"[fuzz] run {run_id} (seed {args.seed}); logs in {var_dir / 'logs'}")
    try:
        await start_stack(stack, supervisor, announce=lambda n: say(f"[fuzz] starting {n} …"))
        addresses = {name: stack.grpc_target(name) for name in SERVICES}
        pids = {name: supervisor.get(name).pid or 0 for name in SERVICES}
        rss_before = {name: rss_kib(pid) for name, pid in pids.items()}
        rpcs = methods(SERVICES)
        say(
            f"[fuzz] {args.requests:,} hostile requests over {len(rpcs)} RPCs,"
            f" {args.concurrency} at a time (at most {args.time_limit:g} s) …"
        )
        fuzzer = GrpcFuzzer(
            addresses,
            rpcs,
            seed=args.seed,
            breach_dir=var_dir / "breaches",
            concurrency=args.concurrency,
        )
        tally = await fuzzer.run(args.requests, args.time_limit)
        say(f"[fuzz] {tally.sent:,} requests answered in {tally.seconds:.0f} s")
        poison: PoisonReport | None = None
        if not args.no_poison:
            say("[fuzz] poison events on the consumed topics …")
            poison = await poison_kafka(stack, say)
        rss_after = {name: rss_kib(pid) for name, pid in pids.items()}
        names = {name: _service_names(rpcs, name) for name in SERVICES}
        health_problems = {
            name: await health_problem(addresses[name], names[name]) for name in SERVICES
        }
        same = {
            name: not supervisor.get(name).exited and supervisor.get(name).pid == pid
            for name, pid in pids.items()
        }
        checks = [
            verdict.enough_requests(tally, args.requests, args.time_limit),
            verdict.every_rpc_fuzzed(tally, [f"{m.process} {m.path}" for m in rpcs]),
            verdict.no_server_failures(tally),
            verdict.no_hanging_calls(tally, CALL_TIMEOUT),
            *(poison.checks if poison is not None else []),
            verdict.still_serving(health_problems, same),
            verdict.rss_bounded(rss_before, rss_after),
        ]
        report = _report(run_id, args, tally, checks, rss_before, rss_after, poison)
        path = var_dir / "report.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        _print(report, tally, path)
        return 0 if report["ok"] else 1
    except StackError as exc:
        say(f"[fuzz] error: {exc}")
        return 2
    finally:
        await supervisor.stop_all()


def _service_names(rpcs: list[Method], process: str) -> list[str]:
    """The services a process serves, health itself aside (health reports on the others)."""
    names = {m.descriptor.containing_service.full_name for m in rpcs if m.process == process}
    return sorted(names - {health.SERVICE_NAME})


def _report(
    run_id: str,
    args: argparse.Namespace,
    tally: Tally,
    checks: list[Check],
    rss_before: dict[str, int],
    rss_after: dict[str, int],
    poison: PoisonReport | None,
) -> dict[str, Any]:
    return {
        "run": run_id,
        "seed": args.seed,
        "ok": all(check.ok for check in checks),
        "requests": tally.sent,
        "seconds": round(tally.seconds, 1),
        "slowest_answer_seconds": round(tally.slowest_seconds, 3),
        "codes": dict(tally.codes().most_common()),
        "codes_by_rpc": {
            rpc: dict(codes.most_common()) for rpc, codes in sorted(tally.by_method.items())
        },
        "codes_by_kind": {
            kind: dict(codes.most_common()) for kind, codes in sorted(tally.by_kind.items())
        },
        "rss_kib": {
            name: {"before": rss_before[name], "after": rss_after[name]} for name in rss_before
        },
        "poison": poison.cases if poison is not None else None,
        "examples": dict(sorted(tally.examples.items())),
        "breaches": [breach.as_dict() for breach in tally.breaches],
        "checks": [check.as_dict() for check in checks],
    }


def _table(rows: dict[str, Counter[str]], first: str) -> list[str]:
    codes = sorted({code for counts in rows.values() for code in counts})
    width = max([len(first), *(len(row) for row in rows)])
    lines = [
        f"{first:<{width}} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in codes) + f" {'total':>7}"
    ]
    for row, counts in sorted(rows.items()):
        cells = " ".join(f"{counts.get(c, 0) or '·':>{max(len(c), 6)}}" for c in codes)
        lines.append(f"{row:<{width}} {cells} {sum(counts.values()):>7}")
    return lines


def _print(report: dict[str, Any], tally: Tally, path: Path) -> None:
    say("")
    for line in _table(tally.by_method, "answers by RPC"):
        say(line)
    say("")
    for line in _table(tally.by_kind, "answers by kind of request"):
        say(line)
    say("")
    say("streams: OK = still open when the fuzzer let go (the server took the request)")
    if report["poison"] is not None:
        say("")
        say(f"{'poison event':<44} {'topic':<18} dead letters (consumer group: reason)")
        for case in report["poison"]:
            letters = ", ".join(f"{g}: {r}" for g, r in case["dead_letters"]) or "none (skipped)"
            say(f"{case['case']:<44} {case['topic']:<18} {letters}")
    say("")
    for name, rss in report["rss_kib"].items():
        say(f"RSS {name:<10} {rss['before'] / 1024:6.0f} MiB → {rss['after'] / 1024:6.0f} MiB")
    say("")
    for check in report["checks"]:
        say(f"{'PASS' if check['ok'] else 'FAIL'}  {check['check']}: {check['detail']}")
        for example in check["examples"]:
            say(f"        {example}")
        if check["breaches"] > len(check["examples"]):
            say(f"        … {check['breaches']} in all")
    say("")
    say(f"verdict: {'no breach' if report['ok'] else 'BREACH'}  ({path})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shop-fuzz", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="hostile gRPC requests")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds for them")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--no-poison", action="store_true", help="gRPC only, no Kafka events")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 1_000_000 or not 1 <= args.time_limit <= 7200:
        parser.error("--requests must be in [1, 1000000] and --time-limit in [1, 7200]")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be in [1, 64]")
    if args.seed is None:
        args.seed = int(time.time())
    started = time.monotonic()
    code = asyncio.run(fuzz(args, repo_root() / "var" / "fuzz"))
    say(f"[fuzz] done in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
