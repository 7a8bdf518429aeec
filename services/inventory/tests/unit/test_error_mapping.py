"""Stock errors become the status code a caller can act on."""

import grpc
from inventory.domain.model import MAX_AVAILABLE, StockWouldExceedMaximum
from inventory.entrypoints.grpc_api import _api_error
from shop_chassis.errors import ApiError


def test_stock_beyond_the_maximum_is_out_of_range_with_its_reason() -> None:
    error = _api_error(StockWouldExceedMaximum("MUG-001", 1_000_000, MAX_AVAILABLE - 5))

    assert isinstance(error, ApiError)
    assert error.code == grpc.StatusCode.OUT_OF_RANGE
    assert error.details[0].reason == "STOCK_WOULD_EXCEED_MAXIMUM"
    assert dict(error.details[0].metadata) == {
        "sku": "MUG-001",
        "delta": "1000000",
        "available": str(MAX_AVAILABLE - 5),
    }
