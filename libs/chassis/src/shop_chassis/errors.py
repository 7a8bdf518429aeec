"""Errors a handler raises to answer with a precise gRPC status and google.rpc details.

Entrypoints translate domain errors into these; `ErrorMappingInterceptor` (installed on
every server by the chassis) turns them into the status, message and
`grpc-status-details-bin` trailer that clients such as grpcurl print.
`RequestDecodingInterceptor` (installed beside it) answers a request whose bytes are not
the method's message the same way, as `UndecodableRequest`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from shop_chassis.db import DatabaseUnavailable
from shop_chassis.interceptors import Context, HandlerWrappingInterceptor, ServerStream, Unary

ERROR_DOMAIN = "shop.example"

log = structlog.get_logger(__name__)


class ApiError(Exception):
    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def to_status(self) -> grpc.Status:
        packed = []
        for detail in self.details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )
        return rpc_status.to_status(status)


# An error travels in the response's trailers, which a gRPC client refuses past 16 KiB, and
# may refuse past 8 KiB: a request with hundreds of bad fields would be answered with an error
# no client can read (RESOURCE_EXHAUSTED "received metadata size exceeds hard limit"). So an
# error lists a bounded number of problems, each bounded in UTF-8 bytes (the message is sent
# percent-encoded, up to 3 characters a byte; the details base64-encoded): at most ≈ 6 KB.
MAX_LISTED_VIOLATIONS = 10
MAX_SUMMARISED_VIOLATIONS = 3
MAX_FIELD_BYTES = 64
MAX_DESCRIPTION_BYTES = 160


def _clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` bytes of UTF-8 (an ellipsis included)."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "…"


class InvalidArgument(ApiError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Mapping[str, str]) -> None:
        """`violations` maps a field path (e.g. "items[0].quantity") to what is wrong.

        All are kept in `violations`; the status lists the first MAX_LISTED_VIOLATIONS (and
        how many more there are) and its message the first MAX_SUMMARISED_VIOLATIONS.
        """
        self.violations = dict(violations)
        listed = [
            (_clip(field, MAX_FIELD_BYTES), _clip(description, MAX_DESCRIPTION_BYTES))
            for field, description in list(self.violations.items())[:MAX_LISTED_VIOLATIONS]
        ]
        unlisted = len(self.violations) - len(listed)
        field_violations = [
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in listed
        ]
        if unlisted:
            field_violations.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field="", description=f"{unlisted} more problems not listed"
                )
            )
        summary = "; ".join(f"{f}: {d}" for f, d in listed[:MAX_SUMMARISED_VIOLATIONS])
        if len(self.violations) > MAX_SUMMARISED_VIOLATIONS:
            summary += f" (and {len(self.violations) - MAX_SUMMARISED_VIOLATIONS} more)"
        bad_request = error_details_pb2.BadRequest(field_violations=field_violations)
        super().__init__(f"invalid request: {summary}", [bad_request])


class UndecodableRequest(ApiError):
    """The request's bytes do not parse as the message the method takes."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message_type: str, size: int) -> None:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="",  # the request as a whole
                    description=f"{size} bytes that do not parse as a {message_type}",
                )
            ]
        )
        super().__init__(f"request is not a valid {message_type}", [bad_request])


class NotFound(ApiError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, resource_type: str, name: str) -> None:
        info = error_details_pb2.ResourceInfo(
            resource_type=resource_type, resource_name=name, description="not found"
        )
        super().__init__(f"{resource_type} {name!r} not found", [info])


class FailedPrecondition(ApiError):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, reason: str, metadata: Mapping[str, str]) -> None:
        info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
        super().__init__(message, [info])
        self.reason = reason


class OutOfRange(ApiError):
    """A valid request whose result would leave the allowed range given the current state
    (it may succeed once the state changes, unlike INVALID_ARGUMENT)."""

    code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self, message: str, reason: str, metadata: Mapping[str, str]) -> None:
        info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
        super().__init__(message, [info])
        self.reason = reason


class AlreadyExists(ApiError):
    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, message: str, reason: str, metadata: Mapping[str, str]) -> None:
        info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
        super().__init__(message, [info])


class Unavailable(ApiError):
    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromSeconds(retry_after_seconds)
        super().__init__(message, [retry])


async def _abort(context: Context, error: ApiError) -> NoReturn:
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


class InternalError(ApiError):
    """A bug: the server failed on a request it understood. Said as INTERNAL, never UNKNOWN,
    and without the exception's text, which is for the server's log."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self) -> None:
        super().__init__("the server failed on this request; it is logged with its trace id")


async def _internal_error(context: Context, method: str, error: Exception) -> NoReturn:
    log.exception("unexpected_error", method=method, error=repr(error))
    await _abort(context, InternalError())


class ErrorMappingInterceptor(HandlerWrappingInterceptor):
    """Answers an ApiError raised by a handler with its status and details, a database that
    cannot be reached (or stays locked) with UNAVAILABLE, which clients may retry, and any
    other exception (a bug) with INTERNAL, logged with its traceback."""

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        async def unary(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except ApiError as error:
                await _abort(context, error)
            except DatabaseUnavailable as error:
                log.error("database_unavailable", method=method, error=repr(error.__cause__))
                await _abort(context, Unavailable("the database is unavailable; retry later"))
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _internal_error(context, method, error)

        return unary

    def wrap_server_stream(self, method: str, behavior: ServerStream) -> ServerStream:
        async def server_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except ApiError as error:
                await _abort(context, error)
            except DatabaseUnavailable as error:
                log.error("database_unavailable", method=method, error=repr(error.__cause__))
                await _abort(context, Unavailable("the database is unavailable; retry later"))
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _internal_error(context, method, error)

        return server_stream


Deserializer = Callable[[bytes], Any]


class RequestDecodingInterceptor(HandlerWrappingInterceptor):
    """Decodes each request in the handler, so that bytes which are not the method's message
    are answered INVALID_ARGUMENT ("request is not a valid shop.orders.v1.GetOrderRequest").

    grpc decodes a request before any interceptor's behaviour runs, and answers a failure
    UNKNOWN. The handler made here takes the bytes as they came (no deserializer) and
    decodes them as its first step; installed inside the tracing and metrics interceptors,
    a refused request is traced and counted like any other. On the happy path it costs one
    coroutine around the handler; the deserializer is called once, as grpc would have.

    Methods taking one request are covered (unary, server streams). Request streams are left
    to grpc: their handlers may read with `context.read()`, which this could not decode.
    """

    def wrap_handler(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        deserialize = handler.request_deserializer
        if deserialize is None or handler.request_streaming:
            return handler
        message_type = _message_type(deserialize, method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _decoding(handler.unary_unary, deserialize, message_type),  # type: ignore[arg-type]
                response_serializer=handler.response_serializer,
            )
        behavior: Any = handler.unary_stream
        if inspect.isasyncgenfunction(behavior):
            return grpc.unary_stream_rpc_method_handler(
                _decoding_stream(behavior, deserialize, message_type),
                response_serializer=handler.response_serializer,
            )
        if inspect.iscoroutinefunction(behavior):  # writes its responses to the context
            return grpc.unary_stream_rpc_method_handler(
                _decoding(behavior, deserialize, message_type),
                response_serializer=handler.response_serializer,
            )
        return handler  # a threaded handler: grpc runs it off the event loop


def _message_type(deserialize: Deserializer, method: str) -> str:
    """The full name of the message `deserialize` parses (generated code passes the message
    class's FromString), else the method's."""
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    return str(descriptor.full_name) if descriptor is not None else f"request of {method}"


def _decoding(behavior: Unary, deserialize: Deserializer, message_type: str) -> Unary:
    async def unary(raw: bytes, context: Context) -> Any:
        try:
            request = deserialize(raw)
        except DecodeError:
            await _abort(context, UndecodableRequest(message_type, len(raw)))
        return await behavior(request, context)

    return unary


def _decoding_stream(
    behavior: ServerStream, deserialize: Deserializer, message_type: str
) -> ServerStream:
    async def server_stream(raw: bytes, context: Context) -> AsyncIterator[Any]:
        try:
            request = deserialize(raw)
        except DecodeError:
            await _abort(context, UndecodableRequest(message_type, len(raw)))
        async for response in behavior(request, context):
            yield response

    return server_stream


class UpstreamError(ApiError):
    """An error answered by a service we called, passed on with its code and details."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.code = grpc.StatusCode[code_pb2.Code.Name(status.code)]
        self._status = status

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self._status)
