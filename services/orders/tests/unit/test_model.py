from orders.domain.model import Line, order_id_for, request_fingerprint


def test_a_request_id_always_maps_to_the_same_order_id() -> None:
    request_id = "4a4f4f8e-7f8e-4a40-9d7c-0b7d3d1b4a11"
    assert order_id_for(request_id) == order_id_for(request_id)
    assert order_id_for(request_id) != order_id_for("5a4f4f8e-7f8e-4a40-9d7c-0b7d3d1b4a11")


def test_without_a_request_id_every_order_is_new() -> None:
    assert order_id_for(None) != order_id_for(None)


def test_the_same_request_in_another_item_order_has_the_same_fingerprint() -> None:
    a = request_fingerprint("alice", [Line("A-1", 1), Line("B-2", 2)])
    b = request_fingerprint("alice", [Line("B-2", 2), Line("A-1", 1)])
    assert a == b
    assert a != request_fingerprint("alice", [Line("A-1", 2), Line("B-2", 2)])
    assert a != request_fingerprint("bob", [Line("A-1", 1), Line("B-2", 2)])
