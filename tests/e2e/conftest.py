from collections.abc import AsyncIterator

import pytest
from shop_devstack.testing import Shop


@pytest.fixture(scope="session")
async def shop(services: dict[str, str]) -> AsyncIterator[Shop]:
    client = Shop(services)
    yield client
    await client.close()
