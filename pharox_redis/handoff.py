"""The pub/sub side of ``acquire(..., wait=)``: where a waiter hears its hand-off.

A script that hands a freed slot to a waiter publishes the waiter's id on the waiter's
channel (``lua/_wait.lua``). Each :class:`Subscription` is one pub/sub connection subscribed to
a channel of its own (:meth:`~pharox_redis.keys.KeySchema.handoff_channel`); a manager keeps
the idle ones and lends one to each wait in progress, so a wait costs no ``SUBSCRIBE``
after the first. Messages meant for an earlier wait are skipped by waiter id.

The message only wakes the waiter early: the lease is in Redis and the waiter picks it up
with a script (its acquire sent again), which it also runs when no message came in time. A lost
message (a dropped connection) therefore costs latency, never a lease. The connection is
the client's (one server, the Sentinel master, a Redis Cluster node: a cluster's publish
reaches every node), never the storage's held connection for script calls.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Optional

from redis.exceptions import RedisError

from . import codec
from .errors import RedisStorageError
from .keys import KeySchema

SUBSCRIBE_SECONDS = 5.0  # longest a new subscription waits for Redis to confirm it
_IDLE_LIMIT = 64  # idle subscriptions a manager keeps


def _is_handoff(message: Any, waiter: bytes) -> bool:
    return (
        isinstance(message, dict)
        and message.get("type") in ("message", b"message")
        and codec_bytes(message.get("data")) == waiter
    )


def codec_bytes(value: Any) -> bytes:
    """Return a pub/sub payload as bytes (the client may decode responses)."""
    return value if isinstance(value, bytes) else str(value).encode()


def _confirmed(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") in ("subscribe", b"subscribe")


class Subscription:
    """One pub/sub connection, subscribed to its own hand-off channel (sync client)."""

    def __init__(self, client: Any, keys: KeySchema) -> None:
        self.client = client
        self.channel = keys.handoff_channel(codec.new_id())
        self.pubsub: Optional[Any] = None

    def _open(self, seconds: float) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            end = time.monotonic() + min(seconds, SUBSCRIBE_SECONDS)
            while (left := end - time.monotonic()) > 0:
                if _confirmed(pubsub.get_message(timeout=left)):
                    self.pubsub = pubsub
                    return
            raise RedisStorageError("Redis did not confirm the hand-off subscription in time")
        except BaseException:
            _close(pubsub)
            raise

    def ensure(self) -> None:
        """Subscribe now if not subscribed (before joining a queue); errors are left to listen."""
        if self.pubsub is None:
            try:
                self._open(SUBSCRIBE_SECONDS)
            except (RedisError, RedisStorageError, OSError):
                self.close()

    def listen(self, waiter: str, seconds: float) -> bool:
        """Wait at most ``seconds`` for a hand-off to ``waiter``; True when it came.

        A connection error ends the wait early (False): the caller looks in Redis itself.
        A listen that had to subscribe again returns False at once, so the caller looks for
        what was handed before the subscription stood.
        """
        end = time.monotonic() + seconds
        wanted = waiter.encode()
        try:
            if self.pubsub is None:
                self._open(seconds)
                return False
            while (left := end - time.monotonic()) > 0:
                assert self.pubsub is not None
                if _is_handoff(self.pubsub.get_message(timeout=left), wanted):
                    return True
            return False
        except (RedisError, RedisStorageError, OSError):
            self.close()
            return False

    def close(self) -> None:
        """Close the connection (a later listen opens a new one)."""
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            _close(pubsub)


def _close(pubsub: Any) -> None:
    try:
        pubsub.close()
    except Exception:
        pass


class Subscriptions:
    """The hand-off subscriptions of one sync manager: idle ones are lent again."""

    def __init__(self, client: Any, keys: KeySchema) -> None:
        self.client = client
        self.keys = keys
        self.idle: list[Subscription] = []
        self.lock = threading.Lock()

    def borrow(self) -> Subscription:
        """Return an idle subscription, or a new one (subscribed at its first listen)."""
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return Subscription(self.client, self.keys)

    def give_back(self, subscription: Subscription) -> None:
        """Keep a subscription for the next wait (closed beyond the idle limit)."""
        with self.lock:
            if len(self.idle) < _IDLE_LIMIT:
                self.idle.append(subscription)
                return
        subscription.close()

    def close(self) -> None:
        """Close every idle subscription."""
        with self.lock:
            idle, self.idle = self.idle, []
        for subscription in idle:
            subscription.close()


class AsyncSubscription:
    """One pub/sub connection, subscribed to its own hand-off channel (asyncio client)."""

    def __init__(self, client: Any, keys: KeySchema) -> None:
        self.client = client
        self.channel = keys.handoff_channel(codec.new_id())
        self.pubsub: Optional[Any] = None

    async def _open(self, seconds: float) -> None:
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            end = time.monotonic() + min(seconds, SUBSCRIBE_SECONDS)
            while (left := end - time.monotonic()) > 0:
                if _confirmed(await pubsub.get_message(timeout=left)):
                    self.pubsub = pubsub
                    return
            raise RedisStorageError("Redis did not confirm the hand-off subscription in time")
        except BaseException:
            await _aclose(pubsub)
            raise

    async def ensure(self) -> None:
        """Subscribe now if not subscribed (before joining a queue); errors are left to listen."""
        if self.pubsub is None:
            try:
                await asyncio.wait_for(self._open(SUBSCRIBE_SECONDS), SUBSCRIBE_SECONDS)
            except (RedisError, RedisStorageError, OSError, asyncio.TimeoutError):
                await self.close()

    async def listen(self, waiter: str, seconds: float) -> bool:
        """Wait at most ``seconds`` for a hand-off to ``waiter``; True when it came.

        As :meth:`Subscription.listen`.
        """
        end = time.monotonic() + seconds
        wanted = waiter.encode()
        try:
            if self.pubsub is None:
                await asyncio.wait_for(self._open(seconds), timeout=max(seconds, 0.001))
                return False
            while (left := end - time.monotonic()) > 0:
                assert self.pubsub is not None
                if _is_handoff(await self.pubsub.get_message(timeout=left), wanted):
                    return True
            return False
        except (RedisError, RedisStorageError, OSError, asyncio.TimeoutError):
            await self.close()
            return False

    async def close(self) -> None:
        """Close the connection (a later listen opens a new one)."""
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            await _aclose(pubsub)


async def _aclose(pubsub: Any) -> None:
    try:
        closing = getattr(pubsub, "aclose", None) or pubsub.close
        await closing()
    except Exception:
        pass


class AsyncSubscriptions:
    """The hand-off subscriptions of one asyncio manager: idle ones are lent again."""

    def __init__(self, client: Any, keys: KeySchema) -> None:
        self.client = client
        self.keys = keys
        self.idle: list[AsyncSubscription] = []

    def borrow(self) -> AsyncSubscription:
        """Return an idle subscription, or a new one (subscribed at its first listen)."""
        return self.idle.pop() if self.idle else AsyncSubscription(self.client, self.keys)

    async def give_back(self, subscription: AsyncSubscription) -> None:
        """Keep a subscription for the next wait (closed beyond the idle limit)."""
        if len(self.idle) < _IDLE_LIMIT:
            self.idle.append(subscription)
        else:
            await subscription.close()
