"""The verdict of a fuzz run, from its figures: pure functions, unit-tested."""

from __future__ import annotations

from collections.abc import Mapping

from shop_devstack.chaos.verdict import Check
from shop_devstack.fuzz.grpc_calls import SERVER_FAILURES, Tally

# Python keeps memory it once needed (arenas, grpc's buffers for 1 MB requests), so RSS
# grows a little after a burst of large requests without anything leaking; a leak per
# request would show as far more over 10,000 requests.
RSS_GROWTH_LIMIT_MIB = 64


def no_server_failures(tally: Tally) -> Check:
    check = Check("no answer says the server failed (UNKNOWN, INTERNAL, DATA_LOSS)")
    codes = tally.codes()
    check.detail = ", ".join(f"{code} {codes[code]}" for code in sorted(SERVER_FAILURES))
    for breach in tally.breaches:
        if breach.code in SERVER_FAILURES:
            check.breach(
                f"{breach.method} ({breach.kind}): {breach.code} {breach.details!r}"
                f" — request saved as {breach.saved_as}"
            )
    return check


def no_hanging_calls(tally: Tally, call_timeout: float) -> Check:
    check = Check(f"every call answered within {call_timeout:g} s")
    check.detail = f"slowest answer {tally.slowest_seconds:.2f} s: {tally.slowest}"
    for breach in tally.breaches:
        if breach.code == "DEADLINE_EXCEEDED":
            check.breach(f"{breach.method} ({breach.kind}) — request saved as {breach.saved_as}")
    return check


def enough_requests(tally: Tally, wanted: int, time_limit: float) -> Check:
    check = Check(f"{wanted:,} requests sent within {time_limit:g} s")
    check.detail = f"{tally.sent:,} in {tally.seconds:.0f} s"
    if tally.sent < wanted:
        check.breach(f"only {tally.sent:,} of {wanted:,} requests before the time limit")
    return check


def every_rpc_fuzzed(tally: Tally, rpcs: list[str]) -> Check:
    check = Check("every RPC of every service received hostile requests")
    check.detail = f"{len(rpcs)} RPCs"
    for rpc in rpcs:
        if not tally.by_method.get(rpc):
            check.breach(f"{rpc} received none")
    return check


def still_serving(
    health_problems: Mapping[str, str | None], same_process: Mapping[str, bool]
) -> Check:
    check = Check("every service still SERVING (gRPC health), in the process it started in")
    check.detail = ", ".join(
        f"{name} {'SERVING' if problem is None else 'not SERVING'}"
        for name, problem in health_problems.items()
    )
    for name, problem in health_problems.items():
        if problem is not None:
            check.breach(f"{name}: {problem}")
        if not same_process.get(name, False):
            check.breach(f"{name} is not the process that started (it died)")
    return check


def rss_bounded(
    before_kib: Mapping[str, int],
    after_kib: Mapping[str, int],
    limit_mib: int = RSS_GROWTH_LIMIT_MIB,
) -> Check:
    check = Check(f"RSS of each service grew by at most {limit_mib} MiB")
    check.detail = ", ".join(
        f"{name} {before_kib[name] / 1024:.0f} → {after_kib[name] / 1024:.0f} MiB"
        for name in before_kib
    )
    for name, before in before_kib.items():
        grown = (after_kib[name] - before) / 1024
        if grown > limit_mib:
            check.breach(f"{name} grew by {grown:.0f} MiB")
    return check
