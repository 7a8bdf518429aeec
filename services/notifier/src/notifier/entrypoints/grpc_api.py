"""gRPC entrypoint of the notifier service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.errors import ApiError, Unavailable
from shop_chassis.validation import Violations, decode_page_token, encode_page_token

from notifier.adapters.broadcast import BroadcastClosed, Broadcaster, SubscriberTooSlow
from notifier.domain.model import Notification, NotificationKind
from notifier.service_layer.notifications import Notifications

Context = grpc.aio.ServicerContext[Any, Any]


class StreamCutOff(ApiError):
    code = grpc.StatusCode.ABORTED


class NotifierServicer(notifier_pb2_grpc.NotifierServiceServicer):
    def __init__(self, notifications: Notifications, broadcaster: Broadcaster) -> None:
        self.notifications = notifications
        self.broadcaster = broadcaster

    async def ListNotifications(
        self, request: notifier_pb2.ListNotificationsRequest, context: Context
    ) -> notifier_pb2.ListNotificationsResponse:
        violations = Violations()
        violations.identifier("customer_id", request.customer_id, required=False)
        violations.uuid("order_id", request.order_id, required=False)
        page_size = violations.page_size("page_size", request.page_size, default=50, maximum=500)
        query = {"customer_id": request.customer_id, "order_id": request.order_id}
        position = decode_page_token(
            violations, "page_token", request.page_token, query, {"before": int}
        )
        violations.raise_if_any()
        before = int(position["before"]) if position else None
        found = await self.notifications.list_notifications(
            request.customer_id, request.order_id, page_size + 1, before
        )
        page = found[:page_size]
        token = encode_page_token({"before": page[-1][0]}, query) if len(found) > page_size else ""
        return notifier_pb2.ListNotificationsResponse(
            notifications=[_notification(n) for _, n in page], next_page_token=token
        )

    async def StreamNotifications(
        self, request: notifier_pb2.StreamNotificationsRequest, context: Context
    ) -> AsyncIterator[notifier_pb2.Notification]:
        violations = Violations()
        violations.identifier("customer_id", request.customer_id, required=False)
        violations.raise_if_any()
        async with self.broadcaster.subscribe(request.customer_id) as subscription:
            try:
                async for notification in subscription:
                    yield _notification(notification)
            except SubscriberTooSlow:
                raise StreamCutOff(
                    "stream fell too far behind and was closed; reconnect and use"
                    " ListNotifications to catch up"
                ) from None
            except BroadcastClosed:
                raise Unavailable("the notifier is shutting down; reconnect") from None


_KIND = {
    NotificationKind.ORDER_CONFIRMED: notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED,
    NotificationKind.ORDER_CANCELLED: notifier_pb2.NOTIFICATION_KIND_ORDER_CANCELLED,
    NotificationKind.STOCK_LOW: notifier_pb2.NOTIFICATION_KIND_STOCK_LOW,
}


def _notification(notification: Notification) -> notifier_pb2.Notification:
    created = Timestamp()
    created.FromDatetime(notification.create_time)
    return notifier_pb2.Notification(
        notification_id=notification.notification_id,
        customer_id=notification.customer_id,
        order_id=notification.order_id,
        kind=_KIND[notification.kind],
        message=notification.message,
        source_event_id=notification.source_event_id,
        create_time=created,
    )
