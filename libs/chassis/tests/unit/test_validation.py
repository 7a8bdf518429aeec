import base64
import json

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from shop_chassis.errors import FailedPrecondition, InvalidArgument
from shop_chassis.validation import Violations, decode_page_token, encode_page_token

BEFORE: dict[str, type[int] | type[str]] = {"before": int}


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
    found = decode_page_token(Violations(), "t", token, {"customer_id": "alice"}, BEFORE)
    assert found == {"before": 17}
    other = Violations()
    assert decode_page_token(other, "t", token, {"customer_id": "bob"}, BEFORE) is None
    with pytest.raises(InvalidArgument, match="different query"):
        other.raise_if_any()


@pytest.mark.parametrize("token", ["not-a-token", "%%%", "eyJ4IjoxfQ"])
def test_a_forged_page_token_is_invalid(token: str) -> None:
    violations = Violations()
    assert decode_page_token(violations, "page_token", token, {}, BEFORE) is None
    with pytest.raises(InvalidArgument, match="page_token"):
        violations.raise_if_any()


def forged(payload: object) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        forged("[" * 100_000 + "]" * 100_000),  # exhausted the JSON parser: answered UNKNOWN
        forged({"p": {"before": 10**30}, "q": {}}),  # beyond what SQLite can compare with
        forged({"p": {"before": -1}, "q": {}}),
        forged({"p": {"before": True}, "q": {}}),
        forged({"p": {"before": "17"}, "q": {}}),
        forged({"p": {"before": 17, "extra": 1}, "q": {}}),
        forged({"p": {}, "q": {}}),
        "A" * 2000,
    ],
    ids=["deep-nesting", "huge", "negative", "bool", "text", "extra-key", "empty", "too-long"],
)
def test_a_page_token_this_service_could_not_have_issued_is_invalid_argument(token: str) -> None:
    violations = Violations()

    assert decode_page_token(violations, "page_token", token, {}, BEFORE) is None
    with pytest.raises(InvalidArgument) as refused:
        violations.raise_if_any()
    assert refused.value.violations == {"page_token": "is not a page token this service issued"}


def test_a_text_position_is_bounded_too() -> None:
    short = encode_page_token({"after": "MUG-001"}, {})
    long = forged({"p": {"after": "A" * 65}, "q": {}})

    assert decode_page_token(Violations(), "t", short, {}, {"after": str}) == {"after": "MUG-001"}
    assert decode_page_token(Violations(), "t", long, {}, {"after": str}) is None


@pytest.mark.parametrize(
    ("check", "value"),
    [
        ("identifier", "alice\n"),
        ("uuid", "0f8fad5b-d9cb-469f-a165-70867728950e\n"),
        ("sku", "MUG-001\n"),
    ],
)
def test_a_valid_value_with_a_trailing_newline_is_not_valid(check: str, value: str) -> None:
    violations = Violations()

    getattr(violations, check)("field", value)

    with pytest.raises(InvalidArgument):
        violations.raise_if_any()


@pytest.mark.parametrize("text", ["é", "💥", "\x00", "a"])
def test_an_error_with_hundreds_of_problems_stays_small_enough_for_any_client(text: str) -> None:
    refused = InvalidArgument(
        {f"items[{i}].{text * 100}": f"{text * LONG} is not a SKU" for i in range(500)}
    )

    status = refused.to_status()
    binary = sum(len(key) + len(value) for key, value in status.trailing_metadata)
    bad_request = error_details_pb2.BadRequest()
    status_pb2.Status.FromString(status.trailing_metadata[0][1]).details[0].Unpack(bad_request)
    # Under gRPC's 8 KiB soft limit for all metadata: the binary trailer base64-encoded, the
    # message percent-encoded (3 characters a byte at worst).
    assert binary * 4 / 3 + len(status.details.encode()) * 3 < 7 * 1024
    assert len(bad_request.field_violations) == 11
    assert bad_request.field_violations[-1].description == "490 more problems not listed"
    assert status.details.endswith("(and 497 more)")
    assert len(refused.violations) == 500  # all kept for the server's own use


LONG = 70 * 1024


def test_a_repeated_long_sku_is_not_echoed_whole() -> None:
    item = type("Item", (), {"sku": "A" * LONG, "quantity": 1})
    violations = Violations()
    violations.order_lines("items", [item, item])
    with pytest.raises(InvalidArgument) as refused:
        violations.raise_if_any()

    assert all(len(d) <= 100 for d in refused.value.violations.values())


def test_more_items_than_allowed_is_one_problem_however_many_there_are() -> None:
    item = type("Item", (), {"sku": "bad sku", "quantity": 0})
    violations = Violations()
    violations.order_lines("items", [item] * 10_000)
    with pytest.raises(InvalidArgument) as refused:
        violations.raise_if_any()

    assert refused.value.violations == {"items": "at most 100 items per order, got 10000"}
