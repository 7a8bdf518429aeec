"""Errors a handler raises to answer with a precise gRPC status and google.rpc details.

Entrypoints translate domain errors into these; `ErrorMappingInterceptor` (installed on
every server by the chassis) turns them into the status, message and
`grpc-status-details-bin` trailer that clients such as grpcurl print.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError

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


class InvalidArgument(ApiError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Mapping[str, str]) -> None:
        """`violations` maps a field path (e.g. "items[0].quantity") to what is wrong."""
        self.violations = dict(violations)
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in self.violations.items()
            ]
        )
        summary = "; ".join(f"{f}: {d}" for f, d in self.violations.items())
        super().__init__(f"invalid request: {summary}", [bad_request])


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


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: ApiError) -> None:
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Answers an ApiError raised by a handler with its status and details, and a database
    that cannot be reached (or stays locked) with UNAVAILABLE, which clients may retry."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            behavior: Any = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    return await behavior(request, context)
                except ApiError as error:
                    await _abort(context, error)
                except OperationalError as error:
                    log.error("database_unavailable", error=str(error.orig))
                    await _abort(context, Unavailable("the database is unavailable; retry later"))

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            stream_behavior: Any = handler.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    async for response in stream_behavior(request, context):
                        yield response
                except ApiError as error:
                    await _abort(context, error)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class UpstreamError(ApiError):
    """An error answered by a service we called, passed on with its code and details."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.code = grpc.StatusCode[code_pb2.Code.Name(status.code)]
        self._status = status

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self._status)
