"""Request validation that collects every problem and answers INVALID_ARGUMENT once,
with one google.rpc.BadRequest field violation per problem."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any

from shop_chassis.errors import InvalidArgument

# Matched with fullmatch: `$` would also accept a trailing newline ("alice\n"), a second
# spelling of the same id.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SKU_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9-]{1,31}")


class Violations:
    def __init__(self) -> None:
        self._found: dict[str, str] = {}

    def add(self, field: str, description: str) -> None:
        self._found.setdefault(field, description)

    def raise_if_any(self) -> None:
        if self._found:
            raise InvalidArgument(self._found)

    def uuid(self, field: str, value: str, *, required: bool = True) -> None:
        if not value:
            if required:
                self.add(field, "is required")
            return
        # Only the canonical form: ids are compared as strings, and an upper-case or
        # braced copy of the same UUID must not become a second idempotency key.
        if not UUID_PATTERN.fullmatch(value):
            self.add(field, f"must be a UUID in canonical lower-case form, got {value[:80]!r}")

    def identifier(self, field: str, value: str, *, required: bool = True) -> None:
        if not value:
            if required:
                self.add(field, "is required")
        elif not ID_PATTERN.fullmatch(value):
            self.add(field, "must be 1-64 letters, digits, '_', '.' or '-'")

    def sku(self, field: str, value: str) -> None:
        if not value:
            self.add(field, "is required")
        elif not SKU_PATTERN.fullmatch(value):
            self.add(field, "must be 2-32 upper-case letters, digits or '-'")

    def page_size(self, field: str, value: int, *, default: int, maximum: int) -> int:
        if value < 0 or value > maximum:
            self.add(field, f"must be between 0 and {maximum} (0 means {default})")
            return default
        return value or default

    def order_lines(
        self, field: str, items: Sequence[Any], *, max_items: int = 100, max_quantity: int = 1000
    ) -> None:
        """Lines of an order or reservation: (sku, quantity) messages, each SKU once."""
        if not items:
            self.add(field, "at least one item is required")
        elif len(items) > max_items:
            self.add(field, f"at most {max_items} items per order, got {len(items)}")
            return  # the count says it all; 10,000 items need not be looked at one by one
        seen: set[str] = set()
        for index, item in enumerate(items):
            self.sku(f"{field}[{index}].sku", item.sku)
            if item.sku in seen:
                self.add(f"{field}[{index}].sku", f"{item.sku[:40]} appears more than once")
            seen.add(item.sku)
            if not 0 < item.quantity <= max_quantity:
                self.add(f"{field}[{index}].quantity", f"must be between 1 and {max_quantity}")

    def max_length(self, field: str, value: str, maximum: int) -> None:
        if len(value) > maximum:
            self.add(field, f"must be at most {maximum} characters")


def encode_page_token(position: dict[str, Any], query: dict[str, Any]) -> str:
    """An opaque token for the next page; it only works with the same query filters."""
    raw = json.dumps({"p": position, "q": query}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Far longer than any token encode_page_token makes (≈ 200 characters): a longer one is forged,
# and is refused before it is decoded (a deeply nested JSON document exhausts the parser).
MAX_PAGE_TOKEN_LENGTH = 1024
MAX_POSITION = 2**63 - 1  # a row number the databases can compare with
MAX_POSITION_TEXT = 64


def decode_page_token(
    violations: Violations,
    field: str,
    token: str,
    query: dict[str, Any],
    position_types: dict[str, type[int] | type[str]],
) -> dict[str, Any] | None:
    """The position a token encodes, or None for the first page (records a violation if bad).

    `position_types` is the position the service issues, e.g. {"before": int}: anything else
    (another key, a bool, a number beyond a 64-bit row id, a long text) was not issued here.
    """
    if not token:
        return None
    forged = "is not a page token this service issued"
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        violations.add(field, forged)
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
        position, token_query = decoded["p"], decoded["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        violations.add(field, forged)
        return None
    if not isinstance(position, dict) or token_query != json.loads(json.dumps(query)):
        violations.add(field, "belongs to a different query; start again without it")
        return None
    if set(position) != set(position_types) or not all(
        _is_position(position[key], kind) for key, kind in position_types.items()
    ):
        violations.add(field, forged)
        return None
    return position


def _is_position(value: Any, kind: type[int] | type[str]) -> bool:
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_POSITION
    return type(value) is str and len(value) <= MAX_POSITION_TEXT
