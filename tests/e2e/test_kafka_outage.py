"""Orders taken while Kafka is down are published once it is back (transactional outbox).

This test stops and restarts a broker, so it runs against a stack of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor, repo_root
from shop_devstack.testing import Shop, eventually, new_customer

pytestmark = pytest.mark.integration


@pytest.fixture
async def outage_stack() -> AsyncIterator[tuple[Stack, Supervisor, Supervisor]]:
    var_dir = repo_root() / "var" / "test" / "outage"
    shutil.rmtree(var_dir, ignore_errors=True)
    stack = Stack(var_dir, Ports.free())
    kafka = Supervisor(stack.var_dir, out=None)
    services = Supervisor(stack.var_dir, out=None)
    try:
        await kafka.start(await stack.kafka())
        for name in SERVICES:
            await services.start(stack.service(name, {"OTEL_SDK_DISABLED": "true"}))
        yield stack, kafka, services
    finally:
        await services.stop_all()
        await kafka.stop_all()


async def test_an_order_taken_while_kafka_is_down_is_notified_after_it_returns(
    outage_stack: tuple[Stack, Supervisor, Supervisor],
) -> None:
    stack, kafka, _ = outage_stack
    shop = Shop({name: f"127.0.0.1:{stack.ports.grpc[name]}" for name in SERVICES})
    try:
        await kafka.stop_all()
        customer = new_customer()

        order = await shop.create_order(customer, {"MUG-001": 1})

        assert await shop.notifications(customer_id=customer) == []
        await kafka.start(await stack.kafka())

        async def notified() -> None:
            notifications = await shop.notifications(customer_id=customer)
            assert [n.order_id for n in notifications] == [order.order_id]

        await eventually(notified, within=90)
    finally:
        await shop.close()
