"""In-process fan-out of new notifications to StreamNotifications subscribers.

Publishing never waits: each subscriber has a bounded queue, and one that falls that far
behind (or vanished without closing) is cut off instead of slowing the Kafka agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from notifier.domain.model import Notification


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; its stream ends and the client should re-list."""


class BroadcastClosed(Exception):
    """The service is shutting down; the client should reconnect (to another instance)."""


_CLOSED = object()


class _Subscription:
    def __init__(self, customer_id: str, capacity: int) -> None:
        self.customer_id = customer_id
        self.queue: asyncio.Queue[Notification | object | None] = asyncio.Queue(capacity)
        self.overflowed = False

    def close(self) -> None:
        # Into the queue the reader may be waiting on; a full one has no waiting reader.
        try:
            self.queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(_CLOSED)

    def offer(self, notification: Notification) -> None:
        if self.customer_id and notification.customer_id != self.customer_id:
            return
        try:
            self.queue.put_nowait(notification)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Notification]:
        while True:
            notification = await self.queue.get()
            if notification is None:
                raise SubscriberTooSlow
            if notification is _CLOSED:
                raise BroadcastClosed
            assert isinstance(notification, Notification)
            yield notification


class Broadcaster:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._subscriptions: set[_Subscription] = set()

    def publish(self, notification: Notification) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(notification)
            if subscription.overflowed:
                self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every stream (on shutdown, before the gRPC server's grace period)."""
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()

    @asynccontextmanager
    async def subscribe(self, customer_id: str) -> AsyncIterator[_Subscription]:
        subscription = _Subscription(customer_id, self.capacity)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)
