"""The chaos verdict judges what clients were told against what the system holds."""

from __future__ import annotations

import grpc
from shop.orders.v1 import orders_pb2
from shop_devstack.chaos.faults import FaultRecord
from shop_devstack.chaos.load import AckedOrder, Ledger
from shop_devstack.chaos.verdict import _orders_kept, came_back, clear_answers, load_went_through


def held_order(order_id: str, items: dict[str, int], total: int, status: int) -> orders_pb2.Order:
    return orders_pb2.Order(
        order_id=order_id,
        items=[orders_pb2.OrderItem(sku=sku, quantity=q) for sku, q in items.items()],
        total_cents=total,
        status=status,  # type: ignore[arg-type]
    )


def ledger_with(*orders: AckedOrder) -> Ledger:
    ledger = Ledger()
    ledger.acked = {order.order_id: order for order in orders}
    return ledger


def test_an_acknowledged_order_that_is_gone_is_a_breach() -> None:
    ledger = ledger_with(AckedOrder("o-1", "c", {"MUG-001": 1}, 1200))

    check = _orders_kept(ledger, {})

    assert not check.ok
    assert check.breaches == ["o-1 was answered OK and is gone"]


def test_an_order_held_with_other_items_or_status_is_a_breach() -> None:
    changed = AckedOrder("o-1", "c", {"MUG-001": 1}, 1200)
    cancelled = AckedOrder("o-2", "c", {"MUG-001": 1}, 1200, cancel_sent=True, cancelled=True)
    ledger = ledger_with(changed, cancelled)
    held = {
        "o-1": held_order("o-1", {"MUG-001": 2}, 2400, orders_pb2.ORDER_STATUS_CONFIRMED),
        "o-2": held_order("o-2", {"MUG-001": 1}, 1200, orders_pb2.ORDER_STATUS_CONFIRMED),
    }

    check = _orders_kept(ledger, held)

    assert len(check.breaches) == 2
    assert check.breaches[0].startswith("o-1: holds {'MUG-001': 2} for 2400")
    assert check.breaches[1].startswith("o-2: cancel answered OK")


def test_orders_kept_as_answered_pass_and_unanswered_ones_are_reported() -> None:
    ledger = ledger_with(AckedOrder("o-1", "c", {"MUG-001": 1}, 1200))
    held = {
        "o-1": held_order("o-1", {"MUG-001": 1}, 1200, orders_pb2.ORDER_STATUS_CONFIRMED),
        "o-9": held_order("o-9", {"MUG-001": 1}, 1200, orders_pb2.ORDER_STATUS_CONFIRMED),
    }

    check = _orders_kept(ledger, held)

    assert check.ok
    assert "1 whose answer the client never got" in check.detail


def test_unavailable_is_an_answer_a_client_can_act_on_unknown_is_not() -> None:
    ledger = Ledger()
    ledger.count("CreateOrder", grpc.StatusCode.UNAVAILABLE)
    assert clear_answers(ledger).ok

    ledger.count("CreateOrder", grpc.StatusCode.UNKNOWN)
    check = clear_answers(ledger)
    assert not check.ok
    assert check.breaches == ["1 x CreateOrder UNKNOWN"]


def test_a_run_that_placed_no_order_or_gave_up_on_one_is_a_breach() -> None:
    assert not load_went_through(Ledger()).ok

    ledger = ledger_with(AckedOrder("o-1", "c", {"MUG-001": 1}, 1200))
    assert load_went_through(ledger).ok
    ledger.abandoned = 1
    assert load_went_through(ledger).breaches == [
        "1 requests abandoned after retrying for their time"
    ]


def test_a_fault_never_recovered_from_is_a_breach() -> None:
    recovered = FaultRecord("kill -9 orders", injected_at=1.0, lifted_at=1.0, recovered_at=6.0)
    never = FaultRecord("kill -9 kafka", injected_at=9.0, lifted_at=9.0)

    assert came_back([recovered], []).ok
    check = came_back([recovered, never], [])
    assert check.breaches == ["never recovered from: kill -9 kafka"]
