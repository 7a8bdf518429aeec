"""Deadlines: every unary call a server handles has one, and calls it makes inherit it.

`DeadlineInterceptor` (installed on every server by the chassis) gives a unary call whose
caller set no deadline the server's default (`SHOP_GRPC_DEFAULT_DEADLINE_SECONDS`) and
answers DEADLINE_EXCEEDED when the handler outlives it. For every unary call it records
when the call must be over, so that a client adapter can ask `time_remaining()` and pass
no more than that downstream (deadline propagation): orders → inventory never outlives
the call that caused it. Server streams are exempt; they run until the client cancels.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Any

import grpc

from shop_chassis.interceptors import Context, HandlerWrappingInterceptor, Unary

# time.monotonic() at which the call being handled must be over; None outside a call.
_call_deadline: ContextVar[float | None] = ContextVar("shop_call_deadline", default=None)


def time_remaining() -> float | None:
    """Seconds left of the gRPC call this code runs for (its caller's deadline, or the
    server's default), or None outside a call. Zero or less: the call is already over."""
    deadline = _call_deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def bounded_timeout(timeout: float) -> float:
    """`timeout`, or less if the current call has less time left: for an outgoing call."""
    remaining = time_remaining()
    return timeout if remaining is None else max(0.0, min(timeout, remaining))


class DeadlineInterceptor(HandlerWrappingInterceptor):
    def __init__(self, default_seconds: float) -> None:
        super().__init__()
        self.default_seconds = default_seconds

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        default = self.default_seconds

        async def unary(request: Any, context: Context) -> Any:
            remaining = context.time_remaining()
            if remaining is not None:  # grpc cancels the handler at the caller's deadline
                token = _call_deadline.set(time.monotonic() + remaining)
                try:
                    return await behavior(request, context)
                finally:
                    _call_deadline.reset(token)
            token = _call_deadline.set(time.monotonic() + default)
            timeout = asyncio.timeout(default)
            try:
                async with timeout:
                    return await behavior(request, context)
            except TimeoutError:
                if not timeout.expired():  # the handler's own TimeoutError: not ours to map
                    raise
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the call set no deadline and took longer than the server's default of"
                    f" {default:g} s",
                )
            finally:
                _call_deadline.reset(token)

        return unary
