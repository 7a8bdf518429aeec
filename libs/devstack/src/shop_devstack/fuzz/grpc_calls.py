"""Sends hostile requests to every RPC and writes down every answer.

Requests go as raw bytes (no serializer): what the server receives is exactly what was made.
Unary calls carry a deadline; a server stream is read for at most a few messages or a
fraction of a second, then cancelled, and counted OK if it was still open (the server took
the request). Answers that say the server failed (UNKNOWN, INTERNAL, DATA_LOSS) are breaches:
each one's request is saved so it can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from shop_devstack.fuzz.requests import HostileRequest, HostileRequests, Method

CALL_TIMEOUT = 20.0  # an answer slower than this counts as the server hanging
STREAM_MESSAGES = 3
STREAM_WAIT = 0.3
SERVER_FAILURES = frozenset({"UNKNOWN", "INTERNAL", "DATA_LOSS"})
WELL_FORMED = frozenset({"edge_values", "one_field_off", "empty", "hostile_metadata"})
STREAM_OPEN = "OK"  # a stream still open when the fuzzer let go: the server took the request


@dataclass
class Breach:
    method: str
    kind: str
    code: str
    details: str
    saved_as: str

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


@dataclass
class Tally:
    """Answers by RPC and by kind of request."""

    by_method: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    breaches: list[Breach] = field(default_factory=list)
    # "rpc code" -> the first few distinct messages answered with it
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    slowest_seconds: float = 0.0
    slowest: str = ""
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(sum(codes.values()) for codes in self.by_method.values())

    def codes(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for codes in self.by_method.values():
            total.update(codes)
        return total

    def record(
        self, method: Method, request: HostileRequest, code: str, details: str, seconds: float
    ) -> None:
        rpc = f"{method.process} {method.path}"
        self.by_method[rpc][code] += 1
        self.by_kind[request.kind][code] += 1
        examples = self.examples[f"{rpc} {code}"]
        if code != "OK" and len(examples) < 3 and details[:200] not in examples:
            examples.append(details[:200])
        if seconds > self.slowest_seconds and not method.server_streaming:  # streams: ours
            self.slowest_seconds = seconds
            self.slowest = f"{rpc} ({request.kind}, {code})"


class GrpcFuzzer:
    def __init__(
        self,
        addresses: dict[str, str],
        rpcs: list[Method],
        *,
        seed: int,
        breach_dir: Path,
        concurrency: int = 8,
    ) -> None:
        self.addresses = addresses
        self.rpcs = rpcs
        self.rng = random.Random(seed)
        self.requests = HostileRequests(self.rng)
        self.breach_dir = breach_dir
        self.concurrency = concurrency
        self.tally = Tally()
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def run(self, count: int, time_limit: float) -> Tally:
        """Send `count` requests (fewer if `time_limit` seconds pass first)."""
        started = time.monotonic()
        stop_at = started + time_limit
        self._channels = {p: grpc.aio.insecure_channel(a) for p, a in self.addresses.items()}
        try:
            # Each unary RPC once with an empty request: its answers seed the dictionary.
            for method in self.rpcs:
                if not method.server_streaming and self.tally.sent < count:
                    await self._send(method, self.requests.make(method, "empty"))
            queue = iter(range(count - self.tally.sent))

            async def worker() -> None:
                for _ in queue:
                    if time.monotonic() > stop_at:
                        return
                    method = self.rng.choice(self.rpcs)
                    await self._send(method, self.requests.make(method))

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        finally:
            for channel in self._channels.values():
                await channel.close()
        self.tally.seconds = time.monotonic() - started
        return self.tally

    async def _send(self, method: Method, request: HostileRequest) -> None:
        channel = self._channels[method.process]
        started = time.monotonic()
        code, details, reply = await (
            self._stream(channel, method, request)
            if method.server_streaming
            else self._unary(channel, method, request)
        )
        self.tally.record(method, request, code, details, time.monotonic() - started)
        if reply is not None:
            # An answer that does not parse is not this check's business.
            with contextlib.suppress(Exception):
                self.requests.dictionary.learn(method.output_class.FromString(reply))
        if code == "OK" and request.kind in WELL_FORMED:
            self.requests.dictionary.accept(method.descriptor.input_type.full_name, request.body)
        if code in SERVER_FAILURES or code == "DEADLINE_EXCEEDED":
            self._save(method, request, code, details)

    async def _unary(
        self, channel: grpc.aio.Channel, method: Method, request: HostileRequest
    ) -> tuple[str, str, bytes | None]:
        call: Any = channel.unary_unary(
            method.path, request_serializer=None, response_deserializer=None
        )
        try:
            reply = await call(request.body, timeout=CALL_TIMEOUT, metadata=request.metadata)
        except grpc.aio.AioRpcError as error:
            return error.code().name, error.details() or "", None
        return "OK", "", reply

    async def _stream(
        self, channel: grpc.aio.Channel, method: Method, request: HostileRequest
    ) -> tuple[str, str, bytes | None]:
        multi: Any = channel.unary_stream(
            method.path, request_serializer=None, response_deserializer=None
        )
        call = multi(request.body, metadata=request.metadata)
        first: bytes | None = None
        try:
            for _ in range(STREAM_MESSAGES):
                message = await asyncio.wait_for(call.read(), STREAM_WAIT)
                if message is grpc.aio.EOF:
                    break
                first = first or message
            else:
                return STREAM_OPEN, "", first
        except TimeoutError:
            return STREAM_OPEN, "", first
        except grpc.aio.AioRpcError as error:
            return error.code().name, error.details() or "", None
        finally:
            call.cancel()
        code = await call.code()
        return code.name, await call.details() or "", first

    def _save(self, method: Method, request: HostileRequest, code: str, details: str) -> None:
        self.breach_dir.mkdir(parents=True, exist_ok=True)
        number = len(self.tally.breaches) + 1
        name = f"{number:04d}-{method.descriptor.name}-{request.kind}-{code}.bin"
        if number <= 200:
            (self.breach_dir / name).write_bytes(request.body)
        self.tally.breaches.append(
            Breach(method.path, request.kind, code, details[:500], str(self.breach_dir / name))
        )
