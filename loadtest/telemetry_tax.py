"""The telemetry tax: what tracing costs one orders call, measured in the same run.

One side is the stack's orders service (tracing on, as `make run` starts it); the other is a
second orders process the bench starts itself with OTEL_SDK_DISABLED=true, beside the same
inventory and Kafka, with its own database under the run folder. Both get exactly the same
ghz settings, in alternating rounds; the tax is 1 - rps on / rps off.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.tls import TLS_DIR, TlsFiles
from shop_devstack.procs import free_port
from shop_devstack.stack import certs_dir, grpc_serving, open_channel, service_python_env

from loadtest.ghz import HOST, Outcome, latency_percentiles
from loadtest.stack import StackError, Target, create_orders

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0  # SIGTERM, then SIGKILL
WARM_UP_CALLS = 200  # per side, unmeasured: the new process's first calls are cold
WARM_UP_IN_FLIGHT = 16
_PR_SET_PDEATHSIG = 1


def telemetry_tax(rps_on: float, rps_off: float) -> float | None:
    """The share of throughput tracing costs: 1 - rps on / rps off (None without an off rate).

    Negative when the traced side happened to be faster (noise)."""
    if rps_off <= 0:
        return None
    return 1 - rps_on / rps_off


def run_order(rounds: int) -> list[tuple[int, bool]]:
    """(round, tracing on?) in the order they run: on/off, then off/on, and so on, so that a
    drift of the machine over the profile weighs on both sides alike."""
    order = []
    for number in range(1, rounds + 1):
        sides = (True, False) if number % 2 else (False, True)
        order += [(number, tracing) for tracing in sides]
    return order


@dataclass(frozen=True)
class TaxFigures:
    """rps and p99 with tracing on and off, and the tax they make."""

    rps_on: float
    rps_off: float
    p99_on_ms: float | None
    p99_off_ms: float | None

    @property
    def tax(self) -> float | None:
        return telemetry_tax(self.rps_on, self.rps_off)

    def to_json(self) -> dict[str, Any]:
        return {
            "rps_on": round(self.rps_on, 2),
            "rps_off": round(self.rps_off, 2),
            "p99_on_ms": _round(self.p99_on_ms, 3),
            "p99_off_ms": _round(self.p99_off_ms, 3),
            "tax": _round(self.tax, 4),
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _pooled_rps(outcomes: Sequence[Outcome]) -> float:
    if len(outcomes) == 1:
        return outcomes[0].rps  # ghz's own figure, as in the results table
    wall = sum(o.wall_s for o in outcomes)
    return sum(o.requests for o in outcomes) / wall if wall > 0 else 0.0


def figures(on: Sequence[Outcome], off: Sequence[Outcome]) -> TaxFigures:
    """Pools ghz runs of each side: calls over seconds, and the p99 of all successful calls."""

    def p99(outcomes: Sequence[Outcome]) -> float | None:
        return latency_percentiles([c.latency_ms for o in outcomes for c in o.calls if c.ok])[
            "p99_ms"
        ]

    return TaxFigures(_pooled_rps(on), _pooled_rps(off), p99(on), p99(off))


@dataclass(frozen=True)
class TaxReport:
    call: str  # the call profile
    method: str
    rounds: tuple[TaxFigures, ...] = ()
    overall: TaxFigures | None = None  # None: nothing was measured (see `problem`)
    problem: str = ""  # why the tracing-off side could not be measured

    @classmethod
    def of(cls, call: str, method: str, measured: dict[tuple[int, bool], Outcome]) -> TaxReport:
        """`measured`: (round, tracing on?) -> what ghz measured."""
        numbers = sorted({number for number, _ in measured})
        rounds = tuple(figures([measured[(n, True)]], [measured[(n, False)]]) for n in numbers)
        overall = figures(
            [o for (_, on), o in measured.items() if on],
            [o for (_, on), o in measured.items() if not on],
        )
        return cls(call, method, rounds, overall)

    @property
    def tax(self) -> float | None:
        return self.overall.tax if self.overall else None

    def to_json(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "method": self.method,
            "run_order": [
                f"{'on' if on else 'off'} {number}" for number, on in run_order(len(self.rounds))
            ],
            "rounds": [
                {"round": number, **figures.to_json()}
                for number, figures in enumerate(self.rounds, 1)
            ],
            "overall": self.overall.to_json() if self.overall else None,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class UntracedOrders:
    address: str
    metrics_port: int
    log: Path


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it if the bench itself dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the process the bench started (by its pid), SIGKILL if it lingers."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def untraced_orders(
    target: Target, run_dir: Path, root: Path
) -> AsyncIterator[UntracedOrders]:
    """A second orders process with tracing off, on free loopback ports, its own database in
    <run_dir>/orders-untraced and its output in <run_dir>/orders-untraced.log; the stack's
    inventory and Kafka. Stopped when the block ends, however it ends."""
    grpc_port, metrics_port = free_port(), free_port()
    var_dir = run_dir / "orders-untraced"
    var_dir.mkdir()
    log = run_dir / "orders-untraced.log"
    env = {
        **{k: v for k, v in os.environ.items() if k != "ORDERS_DATABASE_URL"},
        "OTEL_SDK_DISABLED": "true",
        "ORDERS_GRPC_PORT": str(grpc_port),
        "ORDERS_METRICS_PORT": str(metrics_port),
        "SHOP_BIND_HOST": HOST,
        "SHOP_VAR_DIR": str(var_dir),
        "KAFKA_BOOTSTRAP_SERVERS": target.kafka,
        "ORDERS_KAFKA_CONSUMER_GROUP": "shop-orders-untraced",
        "INVENTORY_ADDRESS": target.grpc["inventory"],
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **service_python_env(),  # run as the stack's orders is, but for the tracing
        # SHOP_TLS=1 comes with the bench's environment; the certificates are the stack's,
        # not under this process's own SHOP_VAR_DIR.
        **({TLS_DIR: str(certs_dir())} if target.tls else {}),
    }
    address = f"{HOST}:{grpc_port}"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orders",
            cwd=root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the bench, which stops it in order
            preexec_fn=_die_with_parent,
        )
    print(f"[telemetry_tax] started orders with tracing off (pid {process.pid}) on {address}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.returncode is not None:
                raise StackError(
                    f"the tracing-off orders process exited with {process.returncode} before"
                    f" serving; its output is in {log}"
                )
            with contextlib.suppress(grpc.aio.AioRpcError, OSError):
                if await grpc_serving(address, target.tls):
                    break
            if time.monotonic() > deadline:
                raise StackError(
                    f"the tracing-off orders process did not serve on {address} in"
                    f" {START_TIMEOUT_S:g}s; see {log}"
                )
            await asyncio.sleep(0.2)
        yield UntracedOrders(address, metrics_port, log)
    finally:
        await _stop(process)
        print(f"[telemetry_tax] stopped orders with tracing off (pid {process.pid})")


async def prepare_order(orders: str, sku: str, customer: str, tls: TlsFiles | None) -> str:
    """Creates one order on the orders service at `orders` and reads it back; its id."""
    (order_id,) = await create_orders(orders, sku, customer, 1, tls)
    await warm_up(orders, order_id, tls, 1)
    return order_id


async def warm_up(
    orders: str, order_id: str, tls: TlsFiles | None, calls: int = WARM_UP_CALLS
) -> None:
    """GetOrder `calls` times, a few at once, so neither side is measured cold."""
    in_flight = asyncio.Semaphore(WARM_UP_IN_FLIGHT)
    async with open_channel(orders, tls, server_name="orders") as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)

        async def one() -> None:
            async with in_flight:
                await stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=10)

        try:
            await asyncio.gather(*(one() for _ in range(calls)))
        except grpc.aio.AioRpcError as exc:
            raise StackError(
                f"GetOrder {order_id} on {orders} failed: {exc.code().name} ({exc.details()})"
            ) from exc
