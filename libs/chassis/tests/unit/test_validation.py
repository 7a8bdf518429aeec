import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from shop_chassis.errors import FailedPrecondition, InvalidArgument
from shop_chassis.validation import Violations, decode_page_token, encode_page_token


def test_every_violation_is_reported_at_once_with_its_field() -> None:
    violations = Violations()
    violations.uuid("order_id", "42")
    violations.identifier("customer_id", "")
    violations.sku("items[0].sku", "mug")
    with pytest.raises(InvalidArgument) as caught:
        violations.raise_if_any()
    assert set(caught.value.violations) == {"order_id", "customer_id", "items[0].sku"}


def test_invalid_argument_carries_a_bad_request_detail() -> None:
    status = InvalidArgument({"items": "at least one item is required"}).to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(value)
    bad_request = error_details_pb2.BadRequest()
    assert rich.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "items"


def test_failed_precondition_carries_reason_and_metadata() -> None:
    status = FailedPrecondition("no", reason="INSUFFICIENT_STOCK", metadata={"sku": "A-1"})
    rich = status_pb2.Status.FromString(status.to_status().trailing_metadata[0][1])
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (info.reason, dict(info.metadata)) == ("INSUFFICIENT_STOCK", {"sku": "A-1"})


@pytest.mark.parametrize(("value", "expected"), [(0, 50), (10, 10), (500, 500)])
def test_page_size_zero_means_the_default(value: int, expected: int) -> None:
    assert Violations().page_size("page_size", value, default=50, maximum=500) == expected


@pytest.mark.parametrize("value", [-1, 501])
def test_page_size_out_of_range_is_a_violation(value: int) -> None:
    violations = Violations()
    violations.page_size("page_size", value, default=50, maximum=500)
    with pytest.raises(InvalidArgument, match="page_size"):
        violations.raise_if_any()


def test_a_page_token_round_trips_for_the_same_query_only() -> None:
    token = encode_page_token({"before": 17}, {"customer_id": "alice"})
    assert decode_page_token(Violations(), "t", token, {"customer_id": "alice"}) == {"before": 17}
    other = Violations()
    assert decode_page_token(other, "t", token, {"customer_id": "bob"}) is None
    with pytest.raises(InvalidArgument, match="different query"):
        other.raise_if_any()


@pytest.mark.parametrize("token", ["not-a-token", "%%%", "eyJ4IjoxfQ"])
def test_a_forged_page_token_is_invalid(token: str) -> None:
    violations = Violations()
    assert decode_page_token(violations, "page_token", token, {}) is None
    with pytest.raises(InvalidArgument, match="page_token"):
        violations.raise_if_any()
