"""The order flow through the real services, Kafka and databases."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from shop.notifier.v1 import notifier_pb2
from shop.orders.v1 import orders_pb2
from shop_devstack.testing import Shop, error_details, eventually, new_customer

pytestmark = pytest.mark.integration

CONFIRMED = notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED
CANCELLED = notifier_pb2.NOTIFICATION_KIND_ORDER_CANCELLED


async def test_a_created_order_is_priced_by_inventory_and_becomes_a_notification(
    shop: Shop,
) -> None:
    customer = new_customer()
    before = await shop.stock("SOCKS-3P")

    order = await shop.create_order(customer, {"SOCKS-3P": 2, "MUG-001": 1})

    assert order.status == orders_pb2.ORDER_STATUS_CONFIRMED
    assert [(i.sku, i.quantity, i.unit_price_cents) for i in order.items] == [
        ("SOCKS-3P", 2, 1800),
        ("MUG-001", 1, 1200),
    ]
    assert order.total_cents == 2 * 1800 + 1200
    after = await shop.stock("SOCKS-3P")
    assert (after.available, after.reserved) == (before.available - 2, before.reserved + 2)

    async def notified() -> notifier_pb2.Notification:
        notifications = await shop.notifications(customer_id=customer)
        assert len(notifications) == 1
        return notifications[0]

    notification = await eventually(notified)
    assert notification.kind == CONFIRMED
    assert notification.order_id == order.order_id
    fetched = await shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order.order_id))
    assert fetched == order


async def test_cancelling_releases_the_stock_and_notifies_once(shop: Shop) -> None:
    customer = new_customer()
    order = await shop.create_order(customer, {"TEE-BLK-M": 3})
    held = await shop.stock("TEE-BLK-M")

    cancel = orders_pb2.CancelOrderRequest(order_id=order.order_id, reason="too big")
    cancelled = await shop.orders.CancelOrder(cancel)
    again = await shop.orders.CancelOrder(cancel)

    assert cancelled.status == orders_pb2.ORDER_STATUS_CANCELLED
    assert again == cancelled

    async def released() -> None:
        stock = await shop.stock("TEE-BLK-M")
        assert (stock.available, stock.reserved) == (held.available + 3, held.reserved - 3)

    await eventually(released)

    async def both_notified() -> list[int]:
        kinds = [n.kind for n in await shop.notifications(order_id=order.order_id)]
        assert kinds == [CANCELLED, CONFIRMED]
        return kinds

    await eventually(both_notified)


async def test_a_retried_create_returns_the_same_order_and_holds_stock_once(shop: Shop) -> None:
    customer = new_customer()
    request_id = str(uuid.uuid4())
    before = await shop.stock("BOOK-DDIA")

    first, second = await asyncio.gather(
        shop.create_order(customer, {"BOOK-DDIA": 1}, request_id),
        shop.create_order(customer, {"BOOK-DDIA": 1}, request_id),
    )
    third = await shop.create_order(customer, {"BOOK-DDIA": 1}, request_id)

    assert first == second == third
    after = await shop.stock("BOOK-DDIA")
    assert after.reserved == before.reserved + 1
    listed = await shop.orders.ListOrders(orders_pb2.ListOrdersRequest(customer_id=customer))
    assert [o.order_id for o in listed.orders] == [first.order_id]

    async def one_notification() -> None:
        assert len(await shop.notifications(customer_id=customer)) == 1

    await eventually(one_notification)
    await asyncio.sleep(1)  # a second event would have arrived by now
    await one_notification()


async def test_reusing_a_request_id_for_another_request_is_refused(shop: Shop) -> None:
    customer = new_customer()
    request_id = str(uuid.uuid4())
    await shop.create_order(customer, {"MUG-001": 1}, request_id)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.create_order(customer, {"MUG-001": 2}, request_id)

    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    (info,) = error_details(caught.value)
    assert info.reason == "REQUEST_ID_REUSED"


async def test_two_orders_race_for_the_last_unit_and_exactly_one_wins(shop: Shop) -> None:
    sku = "LAST-ONE"
    stock = await shop.stock(sku)
    if stock.available != 1:
        await shop.add_product_stock(sku, 1 - stock.available)

    results = await asyncio.gather(
        shop.create_order(new_customer(), {sku: 1}),
        shop.create_order(new_customer(), {sku: 1}),
        return_exceptions=True,
    )

    won = [r for r in results if isinstance(r, orders_pb2.Order)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert (len(won), len(lost)) == (1, 1), results
    assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    (info,) = error_details(lost[0])
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "INSUFFICIENT_STOCK"
    assert dict(info.metadata) == {"sku": sku, "requested": "1", "available": "0"}
    assert (await shop.stock(sku)).available == 0


async def test_an_unknown_sku_is_not_found_and_reserves_nothing(shop: Shop) -> None:
    before = await shop.stock("MUG-001")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.create_order(new_customer(), {"MUG-001": 1, "NO-SUCH-SKU": 1})
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "NO-SUCH-SKU" in (caught.value.details() or "")
    assert await shop.stock("MUG-001") == before


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"customer_id": "", "items": [{"sku": "MUG-001", "quantity": 1}]}, "customer_id"),
        ({"customer_id": "c", "items": []}, "items"),
        ({"customer_id": "c", "items": [{"sku": "MUG-001", "quantity": 0}]}, "items[0].quantity"),
        (
            {"customer_id": "c", "items": [{"sku": "MUG-001", "quantity": 1001}]},
            "items[0].quantity",
        ),
        (
            {"customer_id": "c", "items": [{"sku": "MUG-001", "quantity": 1}] * 2},
            "items[1].sku",
        ),
        (
            {"customer_id": "c", "items": [{"sku": f"SKU-{i}", "quantity": 1} for i in range(101)]},
            "items",
        ),
        (
            {
                "customer_id": "c",
                "request_id": "again",
                "items": [{"sku": "MUG-001", "quantity": 1}],
            },
            "request_id",
        ),
        ({"customer_id": "c d", "items": [{"sku": "MUG-001", "quantity": 1}]}, "customer_id"),
    ],
)
async def test_bad_create_requests_are_invalid_argument_with_the_field_named(
    shop: Shop, request_fields: dict[str, object], field: str
) -> None:
    from google.protobuf import json_format

    request = json_format.ParseDict(request_fields, orders_pb2.CreateOrderRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.orders.CreateOrder(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad_request,) = error_details(caught.value)
    assert field in [v.field for v in bad_request.field_violations]


async def test_unknown_and_malformed_order_ids_are_not_found_and_invalid(shop: Shop) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=str(uuid.uuid4())))
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await shop.orders.CancelOrder(orders_pb2.CancelOrderRequest(order_id="42"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_orders_are_listed_newest_first_in_pages(shop: Shop) -> None:
    customer = new_customer()
    created = [(await shop.create_order(customer, {"SOCKS-3P": 1})).order_id for _ in range(3)]

    first = await shop.orders.ListOrders(
        orders_pb2.ListOrdersRequest(customer_id=customer, page_size=2)
    )
    second = await shop.orders.ListOrders(
        orders_pb2.ListOrdersRequest(
            customer_id=customer, page_size=2, page_token=first.next_page_token
        )
    )

    assert [o.order_id for o in first.orders] == created[::-1][:2]
    assert [o.order_id for o in second.orders] == created[:1]
    assert second.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.orders.ListOrders(
            orders_pb2.ListOrdersRequest(customer_id=customer, page_token="not-a-token")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_streamed_notifications_arrive_live(shop: Shop) -> None:
    customer = new_customer()
    stream = shop.notifier.StreamNotifications(
        notifier_pb2.StreamNotificationsRequest(customer_id=customer)
    )
    await asyncio.sleep(0.3)  # let the subscription register before the event
    order = await shop.create_order(customer, {"MUG-001": 1})

    received = await asyncio.wait_for(stream.read(), 20)

    assert received.order_id == order.order_id
    assert received.kind == CONFIRMED
    stream.cancel()
