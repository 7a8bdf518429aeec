"""`freeze_startup_heap`: what is alive when a service serves leaves the collector's scans."""

import gc
import weakref
from collections.abc import Iterator

import pytest
from shop_chassis.heap import freeze_startup_heap


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    gc.disable()  # no automatic collection between the test's steps
    try:
        yield
    finally:
        gc.unfreeze()  # the test process keeps collecting what it tested with
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_live_objects_are_frozen_and_garbage_is_collected_first(unfrozen_afterwards: None) -> None:
    gc.unfreeze()
    alive = Node()
    garbage = Node()
    collected = weakref.ref(garbage)
    del garbage
    assert collected() is not None  # a cycle outlives its last name until a collection

    frozen = freeze_startup_heap()

    assert frozen == gc.get_freeze_count() > 0
    tracked = {id(o) for o in gc.get_objects()}
    assert id(alive) not in tracked  # in the permanent generation, which collections skip
    assert collected() is None  # collected before the freeze, not kept for good
    made_later = Node()
    assert id(made_later) in {id(o) for o in gc.get_objects()}  # still collected as usual
