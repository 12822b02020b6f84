"""``AsyncRedisProxyManager``: the API of ``RedisProxyManager`` as coroutines.

pharox has no asyncio manager (its ``async_helpers`` run the sync one in threads); this one
awaits ``redis.asyncio`` directly. Arguments, payloads, retries and keep-alive timing come
from ``manager_core.py``, shared with the sync manager.
"""

from __future__ import annotations

import asyncio
import inspect
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, TypeVar, Union

from pharox import (
    AcquireEventPayload,
    Lease,
    ProxyFilters,
    ReleaseEventPayload,
    RetryConfig,
    SelectorStrategy,
)

from . import leasing
from .async_storage import AsyncRedisStorage
from .core import Op
from .errors import LeaseLostError, RedisStorageError
from .leased import LeasedProxy
from .leasing import now_utc
from .manager_core import (
    DEFAULT_CONSUMER_NAME,
    KeepAliveState,
    ManagerCore,
    build_retry_config,
    retry_delays,
    unwrap_lease,
)

T = TypeVar("T")
P = TypeVar("P")
Callback = Callable[[P], Optional[Awaitable[None]]]


class AsyncRedisProxyManager:
    """Lease proxies from pools in Redis from asyncio code, one round trip per acquire.

    Methods mirror :class:`~pharox_redis.RedisProxyManager` (and so pharox's
    ``ProxyManager``) as coroutines and async context managers. Callbacks may be plain
    functions or coroutine functions.

    Parameters
    ----------
    storage:
        The :class:`~pharox_redis.AsyncRedisStorage` holding the pools.
    retries:
        Times an operation whose reply was lost is sent again with the same lease id.

    """

    DEFAULT_CONSUMER_NAME = DEFAULT_CONSUMER_NAME

    def __init__(self, storage: AsyncRedisStorage, *, retries: int = 2) -> None:
        if not isinstance(storage, AsyncRedisStorage):
            raise ValueError(
                f"AsyncRedisProxyManager needs an AsyncRedisStorage, got {type(storage)}"
            )
        self.storage = storage
        self._m = ManagerCore(storage.core, retries)
        self._acquire_callbacks: list[Callback[AcquireEventPayload]] = []
        self._release_callbacks: list[Callback[ReleaseEventPayload]] = []

    async def _run(self, make_op: Callable[[], Op[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await self.storage.run(make_op())
            except RedisStorageError as exc:
                delay = self._m.retry_delay(exc, attempt)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                attempt += 1

    # ------------------------------------------------------------------ callbacks

    def register_acquire_callback(self, callback: Callback[AcquireEventPayload]) -> None:
        """Register a callback (sync or async) invoked after every acquire attempt."""
        self._acquire_callbacks.append(callback)

    def register_release_callback(self, callback: Callback[ReleaseEventPayload]) -> None:
        """Register a callback (sync or async) invoked after every release."""
        self._release_callbacks.append(callback)

    @staticmethod
    async def _notify(callbacks: list[Callback[Any]], payload: Any) -> None:
        for callback in callbacks:
            result = callback(payload)
            if inspect.isawaitable(result):
                await result

    # ------------------------------------------------------------------ acquire

    async def acquire(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[LeasedProxy]:
        """Lease a proxy and return it with its lease, or None when none is available."""
        started_at = now_utc() if self._acquire_callbacks else None
        request = self._m.request(pool_name, consumer_name, duration_seconds, filters, selector)
        try:
            acquired = await self._run(lambda: leasing.acquire(self.storage.core, request))
        except RedisStorageError as exc:
            exc.lease_id = request.lease_id
            raise
        if started_at is not None:
            payload = self._m.acquire_payload(request, acquired, started_at)
            await self._notify(self._acquire_callbacks, payload)
        return acquired.leased

    async def acquire_proxy(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[Lease]:
        """Lease a proxy from a pool; return the lease, or None when none is available."""
        leased = await self.acquire(pool_name, consumer_name, duration_seconds, filters, selector)
        return leased.lease if leased is not None else None

    async def acquire_with_retry(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        retry_config: Optional[RetryConfig] = None,
        sleep_fn: Optional[Callable[[float], Awaitable[None]]] = None,
    ) -> Optional[LeasedProxy]:
        """Like :meth:`acquire`, trying again with pharox's backoff while none is available."""
        sleep = sleep_fn or asyncio.sleep
        delays = retry_delays(retry_config or RetryConfig())
        while True:
            leased = await self.acquire(
                pool_name, consumer_name, duration_seconds, filters, selector
            )
            wait = next(delays, None)
            if leased is not None or wait is None:
                return leased
            if wait > 0:
                await sleep(wait)

    async def acquire_proxy_with_retry(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        retry_config: Optional[RetryConfig] = None,
        sleep_fn: Optional[Callable[[float], Awaitable[None]]] = None,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        backoff_multiplier: float = 2.0,
        max_backoff_seconds: Optional[float] = None,
    ) -> Optional[Lease]:
        """Acquire with retry/backoff, with pharox's arguments and spacing."""
        config = build_retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = await self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        return leased.lease if leased is not None else None

    # ------------------------------------------------------------------ release, renew

    async def release_proxy(self, lease: Union[Lease, LeasedProxy]) -> None:
        """Release a lease (or a LeasedProxy); idempotent, one round trip."""
        held = unwrap_lease(lease)
        released = await self._run(lambda: leasing.release(self.storage.core, held))
        self._m.mark_released(held, released)
        if self._release_callbacks:
            await self._notify(self._release_callbacks, self._m.release_payload(held, released))

    async def renew_lease(self, lease: Union[Lease, LeasedProxy], duration_seconds: float) -> Lease:
        """Extend an active lease to end ``duration_seconds`` from now (server clock).

        Raises :class:`~pharox_redis.errors.LeaseLostError` when it expired or was released.
        """
        held = unwrap_lease(lease)
        return await self._run(lambda: leasing.renew(self.storage.core, held, duration_seconds))

    async def cleanup_expired_leases(self) -> int:
        """Reclaim expired leases of every pool and return how many."""
        return await self.storage.cleanup_expired_leases()

    # ------------------------------------------------------------------ context managers

    @asynccontextmanager
    async def _holding(
        self, leased: Optional[LeasedProxy], duration_seconds: float, keep_alive: bool
    ) -> AsyncIterator[Optional[LeasedProxy]]:
        if leased is None:
            yield None
            return
        renewer = _KeepAlive(self, leased, duration_seconds) if keep_alive else None
        try:
            yield leased
        except asyncio.CancelledError:
            if renewer is None or not renewer.cancelled_body:
                raise
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            leased.check()
            raise
        finally:
            if renewer is not None:
                await renewer.stop()
            try:
                await self.release_proxy(leased.lease)
            except RedisStorageError:
                if not leased.lost:
                    raise  # a lost lease needs no release: report the loss below
        leased.check()

    @asynccontextmanager
    async def with_proxy(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        keep_alive: bool = False,
        retry_config: Optional[RetryConfig] = None,
    ) -> AsyncIterator[Optional[LeasedProxy]]:
        """Lease a proxy for the block and yield it with its lease (None when none is free).

        Parameters
        ----------
        pool_name, consumer_name, duration_seconds, filters, selector:
            As for :meth:`acquire_proxy`.
        keep_alive:
            Renew the lease in a background task every third of ``duration_seconds``. When
            it is lost anyway, the block is cancelled and leaving it raises
            :class:`~pharox_redis.errors.LeaseLostError`.
        retry_config:
            When given, wait and try again while no proxy is available.

        """
        if retry_config is None:
            leased = await self.acquire(
                pool_name, consumer_name, duration_seconds, filters, selector
            )
        else:
            leased = await self.acquire_with_retry(
                pool_name, consumer_name, duration_seconds, filters, selector, retry_config
            )
        async with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held

    @asynccontextmanager
    async def with_lease(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        keep_alive: bool = False,
    ) -> AsyncIterator[Optional[Lease]]:
        """Lease a proxy for the block and yield the lease; ``keep_alive`` as in with_proxy."""
        leased = await self.acquire(pool_name, consumer_name, duration_seconds, filters, selector)
        async with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held.lease if held is not None else None

    @asynccontextmanager
    async def with_retrying_lease(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        retry_config: Optional[RetryConfig] = None,
        sleep_fn: Optional[Callable[[float], Awaitable[None]]] = None,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        backoff_multiplier: float = 2.0,
        max_backoff_seconds: Optional[float] = None,
        *,
        keep_alive: bool = False,
    ) -> AsyncIterator[Optional[Lease]]:
        """Like :meth:`with_lease`, retrying the acquire with pharox's backoff."""
        config = build_retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = await self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        async with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held.lease if held is not None else None


class _KeepAlive:
    """Renew a lease from a task; cancel the holder's task when the lease is lost."""

    def __init__(self, manager: AsyncRedisProxyManager, leased: LeasedProxy, duration: float):
        self.state = KeepAliveState(leased, duration)
        self.cancelled_body = False
        self._manager = manager
        self._body = asyncio.current_task()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        state = self.state
        while True:
            await asyncio.sleep(state.interval)
            try:
                await self._manager.renew_lease(state.leased.lease, state.duration)
            except (LeaseLostError, RedisStorageError) as exc:
                if state.failed(exc):
                    if self._body is not None:
                        self.cancelled_body = True
                        self._body.cancel()
                    return
            else:
                state.renewed()

    async def stop(self) -> None:
        """Stop renewing."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
