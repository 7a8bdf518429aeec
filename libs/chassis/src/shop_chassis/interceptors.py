"""A base for server interceptors that wrap what each handler does.

grpc.aio hands an interceptor the method's handler; to act around the call (catch its
errors, time it) the handler must be rebuilt around a new behaviour. Subclasses say how
to wrap a unary and a server-streaming behaviour (or, to change more than the behaviour,
the whole handler); the rebuilding lives here once, and happens once per method, not once
per call.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Unary = Callable[[Any, Context], Awaitable[Any]]
ServerStream = Callable[[Any, Context], AsyncIterator[Any]]


class HandlerWrappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # method -> (the handler we were given, the one we made of it)
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        return behavior

    def wrap_server_stream(self, method: str, behavior: ServerStream) -> ServerStream:
        return behavior

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        given, made = self._wrapped.get(method, (None, None))
        if given is not handler or made is None:
            made = self.wrap_handler(method, handler)
            self._wrapped[method] = (handler, made)
        return made

    def wrap_handler(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(method, handler.unary_unary),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Async-generator handlers only: grpc's own (health Watch) write to the context.
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                self.wrap_server_stream(method, handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def status_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with, once its behaviour returned or raised `error`."""
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio may hand back the raw integer
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    # GeneratorExit: a server stream closed from outside, at a `yield`, because nobody reads
    # it any more (the caller went away); grpc.aio leaves that to the async generator's
    # finalizer, which runs later, so it is no server error either.
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
