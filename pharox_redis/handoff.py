"""The pub/sub side of ``acquire(..., wait=)``: where a waiter hears its hand-off.

A script that hands a freed slot to a waiter publishes the lease, and what the waiter needs
to use it, on the waiter's channel (``lua/_wait.lua``). Each :class:`Subscription` is one
pub/sub connection subscribed to a channel of its own
(:meth:`~pharox_redis.keys.KeySchema.handoff_channel`); a manager keeps the idle ones and
lends one to each wait in progress, so a wait costs no ``SUBSCRIBE`` after the first.
Messages meant for an earlier wait are skipped by waiter id.

The lease is in Redis before the message is sent: when no message comes in time the waiter
looks (its acquire sent again), and picks up a lease handed meanwhile. A lost
message (a dropped connection) therefore costs latency, never a lease. The connection is
the client's (one server, the Sentinel master, a Redis Cluster node: a cluster's publish
reaches every node), never the storage's held connection for script calls.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Optional

from . import codec
from .errors import RedisStorageError
from .keys import KeySchema

_closing: set[asyncio.Task[None]] = set()  # abandoned subscriptions being closed
SUBSCRIBE_SECONDS = 5.0  # longest a new subscription waits for Redis to confirm it
_IDLE_LIMIT = 64  # idle subscriptions a manager keeps


def _handoff(message: Any, waiter: bytes) -> Optional[bytes]:
    """Return a message's payload when it is a hand-off to ``waiter`` (its first netstring)."""
    if not isinstance(message, dict) or message.get("type") not in ("message", b"message"):
        return None
    data = codec_bytes(message.get("data"))
    return data if data.startswith(b"%d:%s" % (len(waiter), waiter)) else None


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

    def ensure(self, seconds: float) -> None:
        """Subscribe now if not subscribed (before joining a queue), waiting ``seconds`` at most.

        Errors are left to :meth:`listen` (it subscribes again).
        """
        if self.pubsub is None:
            try:
                self._open(seconds)
            except Exception:
                self.close()

    def listen(self, waiter: str, seconds: float) -> Optional[bytes]:
        """Wait at most ``seconds`` for a hand-off to ``waiter``; return its message, or None.

        A connection error ends the wait early (None): the caller looks in Redis itself.
        A listen that had to subscribe again returns None at once, so the caller looks for
        what was handed before the subscription stood.
        """
        end = time.monotonic() + seconds
        wanted = waiter.encode()
        try:
            if self.pubsub is None:
                self._open(seconds)
                return None
            while (left := end - time.monotonic()) > 0:
                assert self.pubsub is not None
                payload = _handoff(self.pubsub.get_message(timeout=left), wanted)
                if payload is not None:
                    return payload
            return None
        except Exception:  # a broken connection: the caller looks by itself (latency only)
            self.close()
            return None

    def close(self) -> None:
        """Close the connection (a later listen opens a new one)."""
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            _close(pubsub)

    def abandon(self) -> None:
        """Close it for good: a wait ended by an error may have left its waiter queued."""
        self.close()


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
        initialize = getattr(self.client, "initialize", None)  # an asyncio cluster's slots
        if initialize is not None:
            await initialize()
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

    async def ensure(self, seconds: float) -> None:
        """Subscribe now if not subscribed, waiting ``seconds`` at most (as the sync one)."""
        if self.pubsub is None:
            try:
                bound = max(0.001, min(seconds, SUBSCRIBE_SECONDS))
                await asyncio.wait_for(self._open(bound), bound)
            except Exception:
                await self.close()

    async def listen(self, waiter: str, seconds: float) -> Optional[bytes]:
        """Wait at most ``seconds`` for a hand-off to ``waiter``; return its message, or None.

        As :meth:`Subscription.listen`.
        """
        end = time.monotonic() + seconds
        wanted = waiter.encode()
        try:
            if self.pubsub is None:
                await asyncio.wait_for(self._open(seconds), timeout=max(seconds, 0.001))
                return None
            while (left := end - time.monotonic()) > 0:
                assert self.pubsub is not None
                payload = _handoff(await self.pubsub.get_message(timeout=left), wanted)
                if payload is not None:
                    return payload
            return None
        except Exception:  # a broken connection: the caller looks by itself (latency only)
            await self.close()
            return None

    async def close(self) -> None:
        """Close the connection (a later listen opens a new one)."""
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            await _aclose(pubsub)

    def abandon(self) -> None:
        """Close it for good, without waiting (a wait ended by an error or a cancellation).

        Its waiter may still be queued: once the connection is closed no hand-off counts it
        as listening, so a lease handed to it gets only the pickup deadline.
        """
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(_aclose(pubsub))
        except RuntimeError:  # no running loop (the loop is closing): nothing to close on
            return
        _closing.add(task)
        task.add_done_callback(_closing.discard)


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
