import signal
from collections.abc import AsyncIterator

import pytest
from shop_devstack.testing import Shop


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_children() -> None:
    """The processes these tests start take a Ctrl-C (SIGINT) as they would in a terminal.

    A shell without job control (a script's `make test &`, nohup) starts its background
    commands with SIGINT ignored, every process below inherits that, and Python keeps it
    ignored: `shop-stack logs` would then sleep through the Ctrl-C a test sends it. A handler
    set here (not SIG_IGN) is reset to the default in each child as it starts.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
async def shop(services: dict[str, str]) -> AsyncIterator[Shop]:
    client = Shop(services)
    yield client
    await client.close()
