"""Hostile gRPC requests, made from the proto descriptors alone.

`methods()` finds every RPC of every service the generated `shop` package (and gRPC's health
service) declares, so a new RPC is fuzzed without new code. `HostileRequests.make` turns a
method's input descriptor into the bytes of one hostile request, of one of these kinds:

- `empty`: no bytes at all (the default message: valid, often a caller's mistake);
- `edge_values`: a well-formed message whose fields hold edge values: empty, the limits of
  the integer type, negative, unknown enum numbers, 70 KB strings, control and bidi
  characters, ids that are almost valid (upper case, a trailing newline), page tokens that
  decode to other types, huge numbers or deep nesting, and values seen in earlier answers
  (order ids, SKUs, tokens), so that requests also get past validation;
- `one_field_off`: a request the server accepted earlier (answered OK) with one field, or one
  field of one element, changed to an edge value: the rest stays valid, so the change is what
  the server meets (an edge-values request until the method has accepted one);
- `huge_list`: a repeated field with 10,000 elements;
- `random_bytes`, `truncated` (a well-formed message cut short), `wrong_wire_type` (a field
  sent as another wire type, or an invalid one), `invalid_utf8` (a string field that is not
  UTF-8), `unknown_fields`, `nesting_bomb` (100,000 nested groups);
- `oversized`: a well-formed message of 1.1 MB, over the servers' 1 MiB limit;
- `hostile_metadata`: a well-formed message with a malformed trace context and a 4 KB header.

Everything comes from one seeded `random.Random`: the same seed makes the same requests.
"""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2

# Wire types (protobuf encoding): varint, 64-bit, length-delimited, group start/end, 32-bit.
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5

HUGE_LIST = 10_000
LONG_STRING = 70 * 1024
OVERSIZED = 1_100_000  # over the servers' 1 MiB (SHOP_GRPC_MAX_REQUEST_BYTES)
NESTING = 100_000

KINDS: dict[str, float] = {  # kind -> weight
    "edge_values": 28,
    "one_field_off": 15,
    "huge_list": 3,
    "random_bytes": 12,
    "truncated": 10,
    "wrong_wire_type": 10,
    "invalid_utf8": 6,
    "unknown_fields": 6,
    "nesting_bomb": 2,
    "oversized": 1,
    "hostile_metadata": 6,
    "empty": 4,
}

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), float("nan"))
_INVALID_UTF8 = (
    b"\xff\xfe",  # never valid
    b"\xc0\xaf",  # an overlong '/'
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"abc\xe2\x82",  # cut inside a character
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
)


def _strings(rng: random.Random) -> list[str]:
    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    return [
        "",
        " ",
        "a",
        "\x00",
        "\n",
        "a\x00b",
        "\t\r\n",
        "\u202eevil",  # right-to-left override
        "e\u0301" * 50,  # combining accents
        "💥" * 100,
        "\ufeff",
        "' OR '1'='1' --",
        '"; DROP TABLE orders; --',
        "../../../../etc/passwd",
        "%s%s%s%n",
        "{0}{1}{__class__}",
        "${jndi:ldap://127.0.0.1/x}",
        "<script>alert(1)</script>",
        "null",
        "NaN",
        "-1",
        "9" * 400,
        "A" * 33,
        "a" * 64,
        "a" * 65,
        "a" * 500,
        "a" * 501,
        "a" * LONG_STRING,
        "é" * (LONG_STRING // 2),
        str(uuid.UUID(int=0)),
        new_uuid().upper(),
        "{" + new_uuid() + "}",
        new_uuid() + "\n",
        new_uuid()[:-1],
        "MUG-001\n",
        "-MUG",
        "mug-001",
    ]


def _token(payload: Any) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_tokens(query: dict[str, str]) -> list[str]:
    """Tokens shaped like this project's (base64 JSON of a position and the query), each
    wrong in its own way; `query` is the request's other string fields, so the service
    reads the position."""
    return [
        _token({"p": {"before": 10**30}, "q": query}),
        _token({"p": {"before": -(2**63) - 1}, "q": query}),
        _token({"p": {"before": 1e308}, "q": query}),
        _token({"p": {"before": True}, "q": query}),
        _token({"p": {"before": "1"}, "q": query}),
        _token({"p": {"after": "\x00" * 10}, "q": query}),
        _token({"p": {"after": "Z" * LONG_STRING}, "q": query}),
        _token({"p": {"after": None}, "q": query}),
        _token({"p": [], "q": query}),
        _token({"p": {}, "q": query}),
        _token({"q": query}),
        _token("[" * 100_000 + "]" * 100_000),
        _token('{"p":' * 50_000),
        _token("not json"),
        "!!!not-base64!!!",
        "=" * 10,
        base64.b64encode(b"\xff\xfe\xfd").decode(),
    ]


@dataclass(frozen=True)
class Method:
    """One RPC of one service process."""

    process: str  # "orders", "inventory", "notifier"
    descriptor: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def server_streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def input_class(self) -> type[Message]:
        return GetMessageClass(self.descriptor.input_type)

    @property
    def output_class(self) -> type[Message]:
        return GetMessageClass(self.descriptor.output_type)


def _service_files() -> Iterator[FileDescriptor]:
    import shop

    for module in pkgutil.walk_packages(shop.__path__, "shop."):
        if module.name.endswith("_pb2"):
            yield importlib.import_module(module.name).DESCRIPTOR


def methods(processes: tuple[str, ...]) -> list[Method]:
    """Every RPC that takes a single request, of every service of `processes` (a service
    `shop.<process>.v1.*` belongs to that process), plus gRPC's health service on each."""
    services: list[tuple[str, ServiceDescriptor]] = []
    for file in _service_files():
        owner = file.package.split(".")[1] if file.package.count(".") >= 2 else ""
        if owner in processes:
            services.extend((owner, s) for s in file.services_by_name.values())
    health = cast(ServiceDescriptor, health_pb2.DESCRIPTOR.services_by_name["Health"])
    services.extend((process, health) for process in processes)
    return [
        Method(process, method)
        for process, service in services
        for method in service.methods
        if not method.client_streaming
    ]


@dataclass(frozen=True)
class HostileRequest:
    kind: str
    body: bytes
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass
class Dictionary:
    """Values worth trying again, by field name: what earlier answers held (order ids, SKUs,
    page tokens), so that hostile requests also reach past validation."""

    seen: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # input message type -> requests of that type a server answered OK
    accepted: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    limit: int = 200

    def accept(self, message_type: str, body: bytes) -> None:
        known = self.accepted[message_type]
        if body not in known and len(body) < 100_000:
            known.append(body)
            del known[: -self.limit]

    def learn(self, message: Message) -> None:
        for descriptor, value in message.ListFields():
            if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
                values = value if _is_repeated(descriptor) else [value]
                for item in list(values)[:20]:
                    self.learn(item)
            elif (
                descriptor.type == FieldDescriptor.TYPE_STRING
                and not _is_repeated(descriptor)
                and 0 < len(value) < 1000
            ):
                known = self.seen[descriptor.name]
                if value not in known:
                    known.append(value)
                    del known[: -self.limit]


def _is_repeated(descriptor: FieldDescriptor) -> bool:
    return bool(descriptor.is_repeated)


def _message_type(descriptor: FieldDescriptor) -> Descriptor:
    if descriptor.message_type is None:
        raise TypeError(f"{descriptor.full_name} is not a message field")
    return descriptor.message_type


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers as 64-bit two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, LEN) + _varint(len(payload)) + payload


def _wire_type(descriptor: FieldDescriptor) -> int:
    """The wire type a field's values are sent with (a repeated number may also be packed)."""
    return {
        FieldDescriptor.TYPE_STRING: LEN,
        FieldDescriptor.TYPE_BYTES: LEN,
        FieldDescriptor.TYPE_MESSAGE: LEN,
        FieldDescriptor.TYPE_GROUP: SGROUP,
        FieldDescriptor.TYPE_DOUBLE: I64,
        FieldDescriptor.TYPE_FIXED64: I64,
        FieldDescriptor.TYPE_SFIXED64: I64,
        FieldDescriptor.TYPE_FLOAT: I32,
        FieldDescriptor.TYPE_FIXED32: I32,
        FieldDescriptor.TYPE_SFIXED32: I32,
    }.get(descriptor.type, VARINT)


class HostileRequests:
    def __init__(self, rng: random.Random, dictionary: Dictionary | None = None) -> None:
        self.rng = rng
        self.dictionary = dictionary or Dictionary()
        self._strings = _strings(rng)
        self._kinds = list(KINDS)
        self._weights = list(KINDS.values())
        self._makers: dict[str, Callable[[Descriptor], HostileRequest]] = {
            "edge_values": lambda d: HostileRequest("edge_values", self._message(d)),
            "one_field_off": self._one_field_off,
            "huge_list": self._huge_list,
            "random_bytes": self._random_bytes,
            "truncated": self._truncated,
            "wrong_wire_type": self._wrong_wire_type,
            "invalid_utf8": self._invalid_utf8,
            "unknown_fields": self._unknown_fields,
            "nesting_bomb": self._nesting_bomb,
            "oversized": self._oversized,
            "hostile_metadata": self._hostile_metadata,
            "empty": lambda d: HostileRequest("empty", b""),
        }

    def make(self, method: Method, kind: str | None = None) -> HostileRequest:
        chosen = kind or self.rng.choices(self._kinds, self._weights)[0]
        return self._makers[chosen](method.descriptor.input_type)

    # Well-formed messages with hostile values

    def _message(self, descriptor: Descriptor, depth: int = 0) -> bytes:
        return self.build(descriptor, depth).SerializeToString()

    def build(self, descriptor: Descriptor, depth: int = 0) -> Message:
        message = GetMessageClass(descriptor)()
        strings: dict[str, str] = {}
        fields = sorted(descriptor.fields, key=lambda f: f.name.endswith("page_token"))
        for field_descriptor in fields:
            if self.rng.random() < 0.15:
                continue  # left unset
            if _is_repeated(field_descriptor):
                count = self.rng.choice((0, 1, 1, 2, 3, 5, 101))
                target = getattr(message, field_descriptor.name)
                for _ in range(count):
                    self._add(target, field_descriptor, depth, strings)
            else:
                self._set(message, field_descriptor, depth, strings)
        return message

    def _add(self, target: Any, f: FieldDescriptor, depth: int, strings: dict[str, str]) -> None:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 3:
                target.add().CopyFrom(self.build(_message_type(f), depth + 1))
        else:
            target.append(self._scalar(f, strings))

    def _set(
        self, message: Message, f: FieldDescriptor, depth: int, strings: dict[str, str]
    ) -> None:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 3:
                getattr(message, f.name).CopyFrom(self.build(_message_type(f), depth + 1))
            return
        value = self._scalar(f, strings)
        setattr(message, f.name, value)
        if f.type == FieldDescriptor.TYPE_STRING:
            strings[f.name] = value

    def _scalar(self, f: FieldDescriptor, strings: dict[str, str]) -> Any:
        rng = self.rng
        if f.type == FieldDescriptor.TYPE_STRING:
            return self._string(f.name, strings)
        if f.type == FieldDescriptor.TYPE_BYTES:
            return rng.choice((b"", b"\x00", b"\xff" * 16, rng.randbytes(LONG_STRING)))
        if f.type == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if f.type == FieldDescriptor.TYPE_ENUM:
            known = [v.number for v in f.enum_type.values] if f.enum_type else []
            return rng.choice([*known, -1, 99, 2**31 - 1, -(2**31)])
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return rng.choice(_FLOATS)
        low, high = _INT_RANGES.get(f.type, (-(2**31), 2**31 - 1))
        edges = [0, 1, 2, 5, 100, 101, 500, 501, 1000, 1001, 1_000_000, 1_000_001, low, high]
        if low < 0:
            edges += [-1, -1000, -1_000_000, -1_000_001, low + 1]
        return rng.choice([*edges, rng.randint(low, high)])

    def _string(self, name: str, strings: dict[str, str]) -> str:
        rng = self.rng
        roll = rng.random()
        learned = self.dictionary.seen.get(name)
        if learned and roll < 0.35:
            return rng.choice(learned)
        if name.endswith("page_token") and roll < 0.7:
            return rng.choice(page_tokens(dict(strings)))
        if name.endswith("_id") and roll < 0.55:
            if name == "customer_id":
                return f"fuzz-{rng.randrange(50)}"
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return rng.choice(self._strings)

    def _one_field_off(self, descriptor: Descriptor) -> HostileRequest:
        accepted = self.dictionary.accepted.get(descriptor.full_name)
        if not accepted or not descriptor.fields:
            return HostileRequest("edge_values", self._message(descriptor))
        message = GetMessageClass(descriptor).FromString(self.rng.choice(accepted))
        self._change_one_field(message, 0)
        return HostileRequest("one_field_off", message.SerializeToString())

    def _change_one_field(self, message: Message, depth: int) -> None:
        rng = self.rng
        descriptor = cast(Descriptor, message.DESCRIPTOR)
        fields = list(descriptor.fields)
        chosen = rng.choice(fields)
        strings = {f.name: v for f, v in message.ListFields() if isinstance(v, str)}
        if _is_repeated(chosen):
            target = getattr(message, chosen.name)
            roll = rng.random()
            if roll < 0.2:
                del target[:]
            elif roll < 0.6 and len(target) and chosen.type == FieldDescriptor.TYPE_MESSAGE:
                self._change_one_field(rng.choice(list(target)), depth + 1)
            elif roll < 0.8 and len(target):
                target.append(target[rng.randrange(len(target))])  # a duplicate element
            else:
                self._add(target, chosen, depth, strings)
        elif chosen.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, chosen.name).CopyFrom(self.build(_message_type(chosen), depth + 1))
        else:
            self._set(message, chosen, depth, strings)

    # Malformed encodings

    def _huge_list(self, descriptor: Descriptor) -> HostileRequest:
        message = self.build(descriptor)
        repeated = [f for f in descriptor.fields if _is_repeated(f)]
        if not repeated:
            return HostileRequest("huge_list", self._message(descriptor))
        chosen = self.rng.choice(repeated)
        target = getattr(message, chosen.name)
        del target[:]
        element = None
        if chosen.type == FieldDescriptor.TYPE_MESSAGE:
            element = self.build(_message_type(chosen), 1)
        for _ in range(HUGE_LIST):
            if element is not None:
                target.add().CopyFrom(element)
            else:
                target.append(self._scalar(chosen, {}))
        return HostileRequest("huge_list", message.SerializeToString())

    def _random_bytes(self, descriptor: Descriptor) -> HostileRequest:
        size = self.rng.choice((1, 2, 3, 8, 16, 64, 256, 4096))
        return HostileRequest("random_bytes", self.rng.randbytes(size))

    def _truncated(self, descriptor: Descriptor) -> HostileRequest:
        body = b""
        for _ in range(5):  # a message with at least two bytes to cut
            body = self._message(descriptor)
            if len(body) >= 2:
                break
        if len(body) < 2:
            return HostileRequest("truncated", b"\x0a")
        return HostileRequest("truncated", body[: self.rng.randrange(1, len(body))])

    def _wrong_wire_type(self, descriptor: Descriptor) -> HostileRequest:
        rng = self.rng
        fields = list(descriptor.fields)
        if fields:
            chosen = rng.choice(fields)
            number, expected = chosen.number, _wire_type(chosen)
        else:
            number, expected = rng.randint(1, 20), VARINT
        wire_type = rng.choice([w for w in (0, 1, 2, 3, 4, 5, 6, 7) if w != expected])
        payload = {
            VARINT: _varint(rng.choice((0, 2**64 - 1, 2**63))),
            I64: rng.randbytes(8),
            LEN: _varint(4) + b"\xff" * 4,
            SGROUP: b"",  # never closed
            EGROUP: b"",  # closes nothing
            I32: rng.randbytes(4),
        }.get(wire_type, rng.randbytes(4))
        body = _tag(number, wire_type) + payload
        if rng.random() < 0.5:
            body = self._message(descriptor) + body
        return HostileRequest("wrong_wire_type", body)

    def _invalid_utf8(self, descriptor: Descriptor) -> HostileRequest:
        strings = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
        number = self.rng.choice(strings).number if strings else 1
        body = self._message(descriptor) + _length_delimited(number, self.rng.choice(_INVALID_UTF8))
        return HostileRequest("invalid_utf8", body)

    def _unknown_fields(self, descriptor: Descriptor) -> HostileRequest:
        used = {f.number for f in descriptor.fields}
        number = self.rng.choice([n for n in (15, 99, 2047, 536_870_911) if n not in used])
        extra = self.rng.choice(
            (
                _tag(number, VARINT) + _varint(2**64 - 1),
                _length_delimited(number, self.rng.randbytes(LONG_STRING)),
                _tag(number, I64) + b"\x00" * 8,
                _tag(number, SGROUP) + _tag(number, EGROUP),
            )
        )
        return HostileRequest("unknown_fields", self._message(descriptor) + extra)

    def _nesting_bomb(self, descriptor: Descriptor) -> HostileRequest:
        return HostileRequest(
            "nesting_bomb", _tag(99, SGROUP) * NESTING + _tag(99, EGROUP) * NESTING
        )

    def _oversized(self, descriptor: Descriptor) -> HostileRequest:
        strings = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
        number = strings[0].number if strings else 15
        return HostileRequest("oversized", _length_delimited(number, b"a" * OVERSIZED))

    def _hostile_metadata(self, descriptor: Descriptor) -> HostileRequest:
        metadata = self.rng.choice(
            (
                (("traceparent", "00-zzzz-yyyy-01"),),
                (("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"),),
                (("tracestate", "k=" + "v" * 4000),),
                (("x-fuzz", "x" * 4000),),
                (("traceparent", "00-" + "f" * 32 + "-" + "f" * 16 + "-ff"), ("baggage", "=;=,")),
            )
        )
        return HostileRequest("hostile_metadata", self._message(descriptor), metadata)
