"""``AsyncRedisProxyManager``: the API of ``RedisProxyManager`` as coroutines.

pharox has no asyncio manager (its ``async_helpers`` run the sync one in threads); this one
awaits ``redis.asyncio`` directly. What it does is written once in ``flows.py``, shared with
the sync manager; this class awaits the steps.
"""

from __future__ import annotations

import asyncio
import inspect
from contextlib import asynccontextmanager
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Optional,
    TypeVar,
    Union,
)

from pharox import (
    AcquireEventPayload,
    Lease,
    ProxyFilters,
    ReleaseEventPayload,
    RetryConfig,
    SelectorStrategy,
)

from . import batch_flows, flows, misses, wait_flows
from .async_storage import AsyncRedisStorage
from .bounded import await_within
from .flows import DEFAULT_CONSUMER_NAME, Flow, Notify, Policy, Run
from .handoff import AsyncSubscriptions
from .keepalive import TaskKeepAlive
from .leased_proxy import LeasedProxy
from .misses import AcquireMiss
from .operations.acquire import AcquireRequest
from .outcome import Outcome

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
        self._acquire_callbacks: list[Callback[AcquireEventPayload]] = []
        self._release_callbacks: list[Callback[ReleaseEventPayload]] = []
        self.policy = Policy(
            storage.context, retries, self._acquire_callbacks, self._release_callbacks
        )
        self._subscriptions = AsyncSubscriptions(storage.client, storage.context.keys)

    async def _perform(self, flow: Flow[T]) -> T:
        """Run a flow of ``flows.py``, awaiting each step it yields."""
        result: Any = None
        error: Optional[Exception] = None
        while True:
            try:
                step = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                if isinstance(step, Run):
                    running = self.storage.executor.run(step.op)
                    if step.timeout is None:
                        result = await running
                    else:
                        result = await await_within(running, step.timeout)
                elif isinstance(step, Notify):
                    for callback in step.callbacks:
                        notified = callback(step.payload)
                        if inspect.isawaitable(notified):
                            await notified
                elif isinstance(step, flows.Listen):
                    result = await step.subscription.listen(step.waiter, step.seconds)
                elif isinstance(step, flows.Subscribe):
                    result = self._subscriptions.borrow()
                    await result.ensure(step.seconds)
                elif isinstance(step, flows.Unsubscribe):
                    await self._subscriptions.give_back(step.subscription)
                else:
                    slept = (step.sleep or asyncio.sleep)(step.seconds)
                    if inspect.isawaitable(slept):
                        await slept
            except Exception as exc:
                error = exc

    # ------------------------------------------------------------------ callbacks

    def register_acquire_callback(self, callback: Callback[AcquireEventPayload]) -> None:
        """Register a callback (sync or async) invoked after every acquire attempt."""
        self._acquire_callbacks.append(callback)

    def register_release_callback(self, callback: Callback[ReleaseEventPayload]) -> None:
        """Register a callback (sync or async) invoked after every release."""
        self._release_callbacks.append(callback)

    # ------------------------------------------------------------------ acquire

    @property
    def last_miss(self) -> Optional[AcquireMiss]:
        """Return why this asyncio task's last acquire returned None (None when it leased).

        Read from the acquire's own reply, so it costs nothing: an unknown pool, no ACTIVE
        proxy, all busy, cooling down, or no match for the filters (see ``MissReason``).
        Kept per asyncio task (a context variable), for the last acquire of any manager.
        """
        return misses.last_miss()

    async def acquire(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        target: Optional[str] = None,
        wait: Optional[float] = None,
    ) -> Optional[LeasedProxy]:
        """Lease a proxy and return it with its lease, or None when none is available.

        ``target`` (keyword-only) is the domain the proxy is for: proxies blocked for it
        (``Outcome.blocked(domain)``) are skipped, by the walk and by a hand-off to a waiter.
        ``wait`` as for :meth:`RedisProxyManager.acquire`: wait up to that many seconds in
        the pool's queue, without polling, for a proxy handed on release.
        """
        seconds = wait_flows.check_wait(wait)
        asked = flows.request(pool_name, consumer_name, duration_seconds, filters, selector, target)
        if seconds > 0:
            return await self._perform(wait_flows.acquire_waiting(self.policy, asked, seconds))
        return await self._perform(flows.acquire(self.policy, asked))

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
        *,
        target: Optional[str] = None,
    ) -> Optional[LeasedProxy]:
        """Like :meth:`acquire`, trying again with pharox's backoff while none is available."""

        def asked() -> AcquireRequest:
            return flows.request(
                pool_name, consumer_name, duration_seconds, filters, selector, target
            )

        config = retry_config or RetryConfig()
        return await self._perform(flows.acquire_with_retry(self.policy, asked, config, sleep_fn))

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
        config = flows.retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = await self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        return leased.lease if leased is not None else None

    # ------------------------------------------------------------------ release, renew

    async def release_proxy(
        self, lease: Union[Lease, LeasedProxy], *, outcome: Optional[Outcome] = None
    ) -> None:
        """Release a lease (or a LeasedProxy); idempotent, one round trip.

        An overrun is logged and marked, and ``outcome`` applied, as
        :meth:`RedisProxyManager.release_proxy` says.
        """
        await self._perform(flows.release(self.policy, lease, outcome=outcome))

    async def renew_lease(self, lease: Union[Lease, LeasedProxy], duration_seconds: float) -> Lease:
        """Extend an active lease to end ``duration_seconds`` from now (server clock).

        Raises :class:`~pharox_redis.errors.LeaseLostError` when it expired or was released.
        """
        return await self._perform(flows.renew(self.policy, lease, duration_seconds))

    # ------------------------------------------------------------------ rotate, batches

    async def rotate(
        self,
        leased: Union[Lease, LeasedProxy],
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        target: Optional[str] = None,
        outcome: Optional[Outcome] = None,
    ) -> Optional[LeasedProxy]:
        """Release ``leased`` and lease the next proxy of its pool, in one round trip.

        As :meth:`RedisProxyManager.rotate <pharox_redis.RedisProxyManager.rotate>`.
        """
        asked = batch_flows.rotate_request(
            leased, consumer_name, duration_seconds, filters, selector, target
        )
        return await self._perform(batch_flows.rotate(self.policy, leased, asked, outcome))

    async def acquire_many(
        self,
        pool_name: str,
        k: int,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        all_or_nothing: bool = False,
        distinct: bool = True,
    ) -> list[LeasedProxy]:
        """Lease up to ``k`` proxies of a pool in one round trip.

        As :meth:`RedisProxyManager.acquire_many <pharox_redis.RedisProxyManager.acquire_many>`.
        """
        asked = batch_flows.many_request(
            pool_name,
            k,
            consumer_name,
            duration_seconds,
            filters,
            selector,
            all_or_nothing,
            distinct,
        )
        return await self._perform(batch_flows.acquire_many(self.policy, asked))

    async def release_many(self, leases: Iterable[Union[Lease, LeasedProxy]]) -> None:
        """Release leases in one round trip, one script call per pool.

        As :meth:`RedisProxyManager.release_many <pharox_redis.RedisProxyManager.release_many>`.
        """
        await self._perform(batch_flows.release_many(self.policy, list(leases)))

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
        renewer = None
        if keep_alive:
            renewer = TaskKeepAlive(self._perform, self.policy, leased, duration_seconds)
        failed = True
        try:
            yield leased
            failed = False
        except asyncio.CancelledError:
            if renewer is None or not renewer.cancelled_body:
                raise
            failed = False  # the keep-alive cancelled the block: the lease is lost, say so
        finally:
            if renewer is not None:
                await renewer.stop()
                if renewer.cancelled_body:  # its cancellation is answered by LeaseLostError
                    _uncancel()
            await self._perform(flows.leave(self.policy, leased, keep_alive, failed))
        leased.check()  # never go on quietly after a cancellation of ours

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
        target: Optional[str] = None,
        wait: Optional[float] = None,
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
        target:
            The domain the proxy is for: proxies blocked for it are skipped (see
            ``Outcome.blocked``). Inside the block, ``leased.report(outcome)`` records what
            happened; leaving the block releases the lease with that outcome.
        wait:
            Wait up to this many seconds in the pool's queue for a proxy (see
            :meth:`acquire`); not together with ``retry_config``.

        """
        if wait and retry_config is not None:
            raise ValueError("give wait or retry_config, not both")
        if retry_config is None:
            leased = await self.acquire(
                pool_name,
                consumer_name,
                duration_seconds,
                filters,
                selector,
                target=target,
                wait=wait,
            )
        else:
            leased = await self.acquire_with_retry(
                pool_name,
                consumer_name,
                duration_seconds,
                filters,
                selector,
                retry_config,
                target=target,
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
        config = flows.retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = await self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        async with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held.lease if held is not None else None


def _uncancel() -> None:
    """Withdraw the keep-alive's cancellation request from the current task (3.11+)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel") and task.cancelling():
        task.uncancel()
