"""The fuzzer's requests come from the proto descriptors, and its verdict fails on what it
must fail on."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from google.protobuf.message import DecodeError
from shop.orders.v1 import orders_pb2
from shop_devstack.fuzz.grpc_calls import Breach, Tally
from shop_devstack.fuzz.poison import CONSUMERS, INVENTORY_TOPIC, ORDERS_TOPIC, cases
from shop_devstack.fuzz.requests import (
    HUGE_LIST,
    KINDS,
    OVERSIZED,
    Dictionary,
    HostileRequests,
    methods,
)
from shop_devstack.fuzz.verdict import (
    enough_requests,
    every_rpc_fuzzed,
    no_server_failures,
    rss_bounded,
    still_serving,
)
from shop_devstack.stack import SERVICES

RPCS = methods(SERVICES)


def by_path(path: str) -> list[str]:
    return sorted(m.process for m in RPCS if m.path == path)


def test_every_rpc_of_every_service_is_found_in_the_descriptors() -> None:
    paths = {m.path for m in RPCS}

    assert {
        "/shop.orders.v1.OrderService/CreateOrder",
        "/shop.orders.v1.OrderService/CancelOrder",
        "/shop.inventory.v1.InventoryService/ReserveStock",
        "/shop.notifier.v1.NotifierService/StreamNotifications",
    } <= paths
    assert by_path("/shop.orders.v1.OrderService/GetOrder") == ["orders"]
    assert by_path("/grpc.health.v1.Health/Check") == sorted(SERVICES)
    assert not any(m.path.startswith("/shop.events") for m in RPCS)  # events have no service
    streams = {m.path for m in RPCS if m.server_streaming}
    assert streams == {
        "/shop.notifier.v1.NotifierService/StreamNotifications",
        "/grpc.health.v1.Health/Watch",
    }


def test_the_same_seed_makes_the_same_requests() -> None:
    create = next(m for m in RPCS if m.descriptor.name == "CreateOrder")
    first, second = HostileRequests(random.Random(7)), HostileRequests(random.Random(7))

    assert [first.make(create).body for _ in range(50)] == [
        second.make(create).body for _ in range(50)
    ]


@pytest.mark.parametrize("kind", ["random_bytes", "truncated", "invalid_utf8", "nesting_bomb"])
def test_malformed_kinds_make_bytes_the_parser_refuses_most_of_the_time(kind: str) -> None:
    create = next(m for m in RPCS if m.descriptor.name == "CreateOrder")
    requests = HostileRequests(random.Random(1))
    refused = 0
    for _ in range(100):
        try:
            orders_pb2.CreateOrderRequest.FromString(requests.make(create, kind).body)
        except DecodeError:
            refused += 1

    assert refused >= 50


def test_edge_values_reach_the_limits_of_each_field() -> None:
    create = next(m for m in RPCS if m.descriptor.name == "CreateOrder")
    requests = HostileRequests(random.Random(3))
    quantities: set[int] = set()
    lengths: set[int] = set()
    for _ in range(1000):
        request = orders_pb2.CreateOrderRequest.FromString(
            requests.make(create, "edge_values").body
        )
        quantities |= {item.quantity for item in request.items}
        lengths.add(len(request.customer_id))

    assert {0, -1, 2**31 - 1, -(2**31)} <= quantities
    assert 0 in lengths and max(lengths) >= 35 * 1024


def test_huge_lists_and_oversized_requests_are_as_large_as_announced() -> None:
    create = next(m for m in RPCS if m.descriptor.name == "CreateOrder")
    requests = HostileRequests(random.Random(5))

    huge = orders_pb2.CreateOrderRequest.FromString(requests.make(create, "huge_list").body)
    oversized = requests.make(create, "oversized")

    assert len(huge.items) == HUGE_LIST
    assert len(oversized.body) > OVERSIZED


def test_values_from_earlier_answers_are_tried_in_later_requests() -> None:
    get_order = next(m for m in RPCS if m.descriptor.name == "GetOrder")
    dictionary = Dictionary()
    dictionary.learn(orders_pb2.Order(order_id="0f8fad5b-d9cb-469f-a165-70867728950e"))
    requests = HostileRequests(random.Random(2), dictionary)

    asked = {
        orders_pb2.GetOrderRequest.FromString(requests.make(get_order, "edge_values").body).order_id
        for _ in range(100)
    }

    assert "0f8fad5b-d9cb-469f-a165-70867728950e" in asked


def test_every_kind_has_a_weight() -> None:
    assert all(weight > 0 for weight in KINDS.values())


def tally(**codes: int) -> Tally:
    result = Tally()
    result.by_method["orders /shop.orders.v1.OrderService/GetOrder"] = Counter(codes)
    return result


def test_an_unknown_answer_is_a_breach_naming_the_saved_request() -> None:
    answers = tally(INVALID_ARGUMENT=10, UNKNOWN=1)
    answers.breaches.append(
        Breach("/shop.orders.v1.OrderService/GetOrder", "edge_values", "UNKNOWN", "boom", "x.bin")
    )

    check = no_server_failures(answers)

    assert not check.ok
    assert check.breaches == [
        "/shop.orders.v1.OrderService/GetOrder (edge_values): UNKNOWN 'boom'"
        " — request saved as x.bin"
    ]


def test_clear_answers_are_no_breach() -> None:
    assert no_server_failures(tally(INVALID_ARGUMENT=10, NOT_FOUND=3, OK=2)).ok


def test_fewer_requests_than_asked_for_is_a_breach() -> None:
    answers = tally(OK=10)
    answers.seconds = 60

    assert not enough_requests(answers, 11, 60).ok
    assert enough_requests(answers, 10, 60).ok


def test_an_rpc_that_received_nothing_is_a_breach() -> None:
    check = every_rpc_fuzzed(tally(OK=1), ["orders /shop.orders.v1.OrderService/GetOrder", "x"])

    assert check.breaches == ["x received none"]


def test_a_service_down_or_restarted_is_a_breach() -> None:
    check = still_serving(
        {"orders": None, "notifier": "the server is NOT_SERVING"},
        {"orders": False, "notifier": True},
    )

    assert check.breaches == [
        "orders is not the process that started (it died)",
        "notifier: the server is NOT_SERVING",
    ]


def test_rss_growth_beyond_the_bound_is_a_breach() -> None:
    before = {"orders": 100 * 1024, "inventory": 100 * 1024}
    after = {"orders": 150 * 1024, "inventory": 170 * 1024}

    check = rss_bounded(before, after, limit_mib=64)

    assert check.breaches == ["inventory grew by 70 MiB"]


def test_poison_cases_cover_both_topics_and_every_dead_letter_reason() -> None:
    poison = cases()

    assert {case.topic for case in poison} == set(CONSUMERS) == {ORDERS_TOPIC, INVENTORY_TOPIC}
    assert {case.reason for case in poison} == {
        "undecodable",
        "rejected",
        "no_event_type",
        None,  # an unknown type: skipped by every consumer
    }
    for topic in CONSUMERS:  # the last case of a topic is dead-lettered by each consumer
        last = [case for case in poison if case.topic == topic][-1]
        assert {group for group, _ in last.expected()} == set(CONSUMERS[topic])


def test_a_type_only_one_consumer_handles_is_dead_lettered_by_that_one_only() -> None:
    confirmed = next(c for c in cases() if c.name == "garbage as OrderConfirmed")

    assert confirmed.expected() == Counter({("shop-notifier", "undecodable"): 1})


def test_an_accepted_request_comes_back_with_one_field_changed() -> None:
    create = next(m for m in RPCS if m.descriptor.name == "CreateOrder")
    accepted = orders_pb2.CreateOrderRequest(
        customer_id="alice", items=[orders_pb2.OrderItem(sku="MUG-001", quantity=1)]
    )
    dictionary = Dictionary()
    dictionary.accept("shop.orders.v1.CreateOrderRequest", accepted.SerializeToString())
    requests = HostileRequests(random.Random(4), dictionary)

    changed = [requests.make(create, "one_field_off") for _ in range(50)]
    decoded = [orders_pb2.CreateOrderRequest.FromString(r.body) for r in changed]

    assert {r.kind for r in changed} == {"one_field_off"}
    assert any(d.customer_id == "alice" and d != accepted for d in decoded)
    assert any(len(d.items) == 2 for d in decoded)  # an element added or duplicated


def test_without_an_accepted_request_one_field_off_is_edge_values() -> None:
    get_order = next(m for m in RPCS if m.descriptor.name == "GetOrder")

    assert HostileRequests(random.Random(1)).make(get_order, "one_field_off").kind == "edge_values"
