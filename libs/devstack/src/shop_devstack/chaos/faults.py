"""The faults of a chaos run, in schedule order, and how long the system took to recover.

Each fault acts on the stack's own processes through the supervisor: a SIGKILL (the
supervisor restarts the process), a planned outage (held down, then started again), or a
SIGSTOP/SIGCONT pair (a process that is there but does not answer).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from aiokafka.admin import AIOKafkaAdminClient
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc

from shop_devstack.chaos.load import Ledger
from shop_devstack.procs import Process
from shop_devstack.stack import SERVICES, Stack, Supervisor

# Faust's broker_session_timeout (shop_chassis.kafka) is 10 s: a consumer stopped for longer
# is dropped from its group, and its partitions move to the other replica.
SESSION_TIMEOUT = 10.0


@dataclass
class FaultRecord:
    name: str
    injected_at: float  # seconds since the load started
    lifted_at: float = 0.0  # the fault is over (the process killed, the outage ended)
    # every process serves, and an order placed after that was answered at once and notified
    recovered_at: float | None = None
    errors_before: int = 0
    client_errors: int = 0  # error answers from the fault until recovery (retried ones too)

    @property
    def recovery_seconds(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.lifted_at


@dataclass
class Chaos:
    stack: Stack
    supervisor: Supervisor
    ledger: Ledger
    started: float = field(default_factory=time.monotonic)
    records: list[FaultRecord] = field(default_factory=list)
    say: Callable[[str], None] = print
    within: float = 120.0  # a fault not recovered from by then counts as never

    def now(self) -> float:
        return time.monotonic() - self.started

    async def inject(self, name: str, action: Callable[[], Awaitable[list[Process]]]) -> None:
        record = FaultRecord(name, injected_at=self.now(), errors_before=self.ledger.errors())
        self.records.append(record)
        self.say(f"[chaos] {record.injected_at:6.1f} s  {name}")
        affected = await action()
        record.lifted_at = self.now()
        await self._recovered(record, affected)

    async def _recovered(self, record: FaultRecord, affected: list[Process]) -> None:
        """Recovered once every affected process serves again and an order placed after that
        went through both paths: answered OK at the first try, and notified (so Kafka, the
        relays and the consumers work again too, not only the gRPC calls)."""
        deadline = time.monotonic() + self.within
        while not all([not p.exited and await _ready(p) for p in affected]):
            if time.monotonic() > deadline:
                self.say(f"[chaos]          not serving again within {self.within:.0f} s")
                return
            await asyncio.sleep(0.2)
        serving = time.monotonic()
        while (found := self.ledger.first_order_after(serving)) is None:
            if time.monotonic() > deadline:
                self.say(f"[chaos]          no order went through within {self.within:.0f} s")
                return
            await asyncio.sleep(0.1)
        async with self.stack.channel("notifier") as channel:
            notifier = notifier_pb2_grpc.NotifierServiceStub(channel)
            while not await _notified(notifier, found[1]):
                if time.monotonic() > deadline:
                    self.say(f"[chaos]          no notification within {self.within:.0f} s")
                    return
                await asyncio.sleep(0.1)
        record.recovered_at = self.now()
        record.client_errors = self.ledger.errors() - record.errors_before
        self.say(
            f"[chaos]          recovered in {record.recovery_seconds:.1f} s,"
            f" {record.client_errors} error answers meanwhile"
        )

    # --- the faults -----------------------------------------------------------------------

    async def kill(self, name: str) -> list[Process]:
        """kill -9; the supervisor restarts it."""
        return [await self.supervisor.kill(name)]

    async def kill_and_keep_down(self, name: str, seconds: float) -> list[Process]:
        await self.supervisor.kill(name, keep_down=True)
        await asyncio.sleep(seconds)
        return [await self.supervisor.release(name)]

    async def kill_partition_leader(self, seconds: float) -> list[Process]:
        """kill -9 the broker leading partition 0 of shop.orders.v1, restart it later."""
        node = await _leader(self.stack.kafka_bootstrap, "shop.orders.v1", 0)
        if node < 1:  # no leader right now (an election): any broker will do
            node = 1
        name = self.stack.topology.kafka_name(node)
        self.say(f"[chaos]          the leader is node {node} ({name})")
        return await self.kill_and_keep_down(name, seconds)

    async def planned_outage(self, name: str, seconds: float) -> list[Process]:
        await self.supervisor.hold(name)
        await asyncio.sleep(seconds)
        return [await self.supervisor.release(name)]

    async def freeze(self, names: list[str], seconds: float) -> list[Process]:
        """SIGSTOP, then SIGCONT: there, but silent (a GC pause, a network partition)."""
        processes = [self.supervisor.get(name) for name in names]
        for process in processes:
            process.signal(signal.SIGSTOP)
        await asyncio.sleep(seconds)
        for process in processes:
            process.signal(signal.SIGCONT)
        return processes


Schedule = list[tuple[str, Callable[[Chaos], Awaitable[list[Process]]]]]


def schedule(stack: Stack) -> Schedule:
    """Every service replica killed once and a broker restarted; on the cluster also a
    consumer stalled past its session, PostgreSQL restarted, Jaeger away for 30 s and
    every broker unreachable for 20 s."""
    topology = stack.topology
    faults: Schedule = []
    for service in SERVICES:
        for replica in stack.replicas:
            name = topology.instance_name(service, replica)
            faults.append((f"kill -9 {name}", functools.partial(Chaos.kill, name=name)))
    faults.append(
        (
            "kill -9 the broker leading shop.orders.v1 partition 0, restart it 15 s later",
            lambda c: c.kill_partition_leader(15.0),
        )
    )
    if topology.replicas > 1:
        notifier = topology.instance_name("notifier", 1)
        faults.append(
            (
                f"SIGSTOP {notifier} for {SESSION_TIMEOUT + 5:.0f} s (past its session)",
                lambda c: c.freeze([notifier], SESSION_TIMEOUT + 5),
            )
        )
    if topology.postgres:
        faults.append(("restart postgres", lambda c: c.planned_outage("postgres", 2.0)))
    if topology.brokers > 1:
        brokers = [topology.kafka_name(n) for n in range(1, topology.brokers + 1)]
        faults.append(("jaeger stopped for 30 s", lambda c: c.planned_outage("jaeger", 30.0)))
        faults.append(
            ("every broker unreachable for 20 s (SIGSTOP)", lambda c: c.freeze(brokers, 20.0))
        )
    return faults


async def _ready(process: Process) -> bool:
    try:
        return await process.spec.ready()
    except Exception:
        return False


async def _notified(notifier: notifier_pb2_grpc.NotifierServiceAsyncStub, order_id: str) -> bool:
    try:
        reply = await notifier.ListNotifications(
            notifier_pb2.ListNotificationsRequest(order_id=order_id), timeout=5
        )
    except grpc.aio.AioRpcError:
        return False  # a notifier replica still starting: ask again
    return bool(reply.notifications)


async def _leader(bootstrap: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
        for found in description["partitions"]:
            if found["partition"] == partition:
                return int(found["leader"])
    finally:
        await admin.close()
    raise LookupError(f"{topic} has no partition {partition}")
