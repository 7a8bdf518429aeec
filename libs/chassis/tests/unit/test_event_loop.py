"""`use_event_loop`: the loop policy a service process sets before it makes any loop."""

import asyncio
from collections.abc import Iterator

import pytest
import uvloop
from shop_chassis.service import use_event_loop


@pytest.fixture
def restore_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


@pytest.mark.parametrize(
    ("name", "loop_type"),
    [("uvloop", uvloop.Loop), ("asyncio", asyncio.SelectorEventLoop)],
)
def test_loops_made_after_it_are_of_the_chosen_kind(
    restore_policy: None, name: str, loop_type: type
) -> None:
    use_event_loop(name)
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is loop_type
        # and it runs a coroutine, which is all Faust and grpc.aio ask of it here
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        loop.close()
