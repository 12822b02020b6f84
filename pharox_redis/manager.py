"""``RedisProxyManager``: pharox's ``ProxyManager`` with one round trip per acquire.

A drop-in subclass: the same methods, arguments and callbacks, but each acquire is one
``lua/acquire.lua`` call (no find-then-create race, so contention yields a lease or None,
never ``ProxyUnavailableError``) and each release one ``lua/release.lua`` call; the pool
stats in callback payloads come from those replies.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar, Union

from pharox import Lease, ProxyFilters, ProxyManager, RetryConfig, SelectorStrategy

from . import leasing
from .core import Op
from .errors import LeaseLostError, RedisStorageError
from .leased import LeasedProxy
from .leasing import now_utc
from .manager_core import (
    KeepAliveState,
    ManagerCore,
    build_retry_config,
    retry_delays,
    unwrap_lease,
)
from .storage import RedisStorage

T = TypeVar("T")


class RedisProxyManager(ProxyManager):
    """Lease proxies from pools in Redis: one round trip per acquire and per release.

    Parameters
    ----------
    storage:
        The :class:`~pharox_redis.RedisStorage` holding the pools.
    retries:
        Times an operation whose reply was lost (connection error, timeout) is sent again
        with the same lease id; the server returns the lease it already made.

    Examples
    --------
    >>> manager = RedisProxyManager(RedisStorage.from_url("redis://127.0.0.1:6379"))
    >>> with manager.with_proxy("scrapers", keep_alive=True) as leased:  # doctest: +SKIP
    ...     fetch(url, proxy=leased.url)

    """

    def __init__(self, storage: RedisStorage, *, retries: int = 2) -> None:
        if not isinstance(storage, RedisStorage):
            raise ValueError(f"RedisProxyManager needs a RedisStorage, got {type(storage)}")
        super().__init__(storage)
        self.storage = storage
        self._m = ManagerCore(storage.core, retries)

    def _run(self, make_op: Callable[[], Op[T]]) -> T:
        attempt = 0
        while True:
            try:
                return self.storage.run(make_op())
            except RedisStorageError as exc:
                delay = self._m.retry_delay(exc, attempt)
                if delay is None:
                    raise
                time.sleep(delay)
                attempt += 1

    # ------------------------------------------------------------------ acquire

    def acquire(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[LeasedProxy]:
        """Lease a proxy and return it with its lease, or None when none is available.

        One round trip (the first use of a pool or consumer name in a process costs one
        more to resolve it; Python predicates in ``filters`` cost one more per candidate).
        """
        started_at = now_utc() if self._acquire_callbacks else None
        request = self._m.request(pool_name, consumer_name, duration_seconds, filters, selector)
        try:
            acquired = self._run(lambda: leasing.acquire(self.storage.core, request))
        except RedisStorageError as exc:
            exc.lease_id = request.lease_id
            raise
        if started_at is not None:
            self._notify_acquire(self._m.acquire_payload(request, acquired, started_at))
        return acquired.leased

    def acquire_proxy(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[Lease]:
        """Lease a proxy from a pool; return the lease, or None when none is available."""
        leased = self.acquire(pool_name, consumer_name, duration_seconds, filters, selector)
        return leased.lease if leased is not None else None

    def acquire_with_retry(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        retry_config: Optional[RetryConfig] = None,
        sleep_fn: Optional[Callable[[float], None]] = None,
    ) -> Optional[LeasedProxy]:
        """Like :meth:`acquire`, trying again with pharox's backoff while none is available."""
        sleep = sleep_fn or time.sleep
        delays = retry_delays(retry_config or RetryConfig())
        while True:
            leased = self.acquire(pool_name, consumer_name, duration_seconds, filters, selector)
            wait = next(delays, None)
            if leased is not None or wait is None:
                return leased
            if wait > 0:
                sleep(wait)

    def acquire_proxy_with_retry(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        retry_config: Optional[RetryConfig] = None,
        sleep_fn: Optional[Callable[[float], None]] = None,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        backoff_multiplier: float = 2.0,
        max_backoff_seconds: Optional[float] = None,
    ) -> Optional[Lease]:
        """Acquire with retry/backoff, with pharox's arguments and spacing."""
        config = build_retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        return leased.lease if leased is not None else None

    # ------------------------------------------------------------------ release, renew

    def release_proxy(self, lease: Union[Lease, LeasedProxy]) -> None:
        """Release a lease (or a LeasedProxy); idempotent, one round trip."""
        held = unwrap_lease(lease)
        released = self._run(lambda: leasing.release(self.storage.core, held))
        self._m.mark_released(held, released)
        if self._release_callbacks:
            self._notify_release(self._m.release_payload(held, released))

    def renew_lease(self, lease: Union[Lease, LeasedProxy], duration_seconds: float) -> Lease:
        """Extend an active lease to end ``duration_seconds`` from now (server clock).

        Updates and returns the lease. Raises
        :class:`~pharox_redis.errors.LeaseLostError` when it expired or was released.
        """
        held = unwrap_lease(lease)
        return self._run(lambda: leasing.renew(self.storage.core, held, duration_seconds))

    # ------------------------------------------------------------------ context managers

    @contextmanager
    def _holding(
        self, leased: Optional[LeasedProxy], duration_seconds: float, keep_alive: bool
    ) -> Iterator[Optional[LeasedProxy]]:
        if leased is None:
            yield None
            return
        renewer = _KeepAlive(self, leased, duration_seconds) if keep_alive else None
        try:
            yield leased
        finally:
            if renewer is not None:
                renewer.stop()
            try:
                self.release_proxy(leased.lease)
            except RedisStorageError:
                if not leased.lost:
                    raise  # a lost lease needs no release: report the loss below
        leased.check()

    @contextmanager
    def with_proxy(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        keep_alive: bool = False,
        retry_config: Optional[RetryConfig] = None,
    ) -> Iterator[Optional[LeasedProxy]]:
        """Lease a proxy for the block and yield it with its lease (None when none is free).

        Parameters
        ----------
        pool_name, consumer_name, duration_seconds, filters, selector:
            As for :meth:`acquire_proxy`.
        keep_alive:
            Renew the lease in a background thread every third of ``duration_seconds``.
            When it is lost anyway (expired during a long Redis outage, or released by
            someone else), ``leased.lost`` becomes True, ``leased.check()`` raises, and
            leaving the block raises :class:`~pharox_redis.errors.LeaseLostError`.
        retry_config:
            When given, wait and try again while no proxy is available.

        """
        if retry_config is None:
            leased = self.acquire(pool_name, consumer_name, duration_seconds, filters, selector)
        else:
            leased = self.acquire_with_retry(
                pool_name, consumer_name, duration_seconds, filters, selector, retry_config
            )
        with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held

    @contextmanager
    def with_lease(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        keep_alive: bool = False,
    ) -> Iterator[Optional[Lease]]:
        """Lease a proxy for the block and yield the lease; ``keep_alive`` as in with_proxy."""
        leased = self.acquire(pool_name, consumer_name, duration_seconds, filters, selector)
        with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held.lease if held is not None else None

    @contextmanager
    def with_retrying_lease(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 300,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        retry_config: Optional[RetryConfig] = None,
        sleep_fn: Optional[Callable[[float], None]] = None,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        backoff_multiplier: float = 2.0,
        max_backoff_seconds: Optional[float] = None,
        *,
        keep_alive: bool = False,
    ) -> Iterator[Optional[Lease]]:
        """Like :meth:`with_lease`, retrying the acquire with pharox's backoff."""
        config = build_retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held.lease if held is not None else None


class _KeepAlive:
    """Renew a lease from a daemon thread until stopped or lost."""

    def __init__(self, manager: RedisProxyManager, leased: LeasedProxy, duration: float):
        self.state = KeepAliveState(leased, duration)
        self._manager = manager
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"pharox-redis keep-alive {leased.lease.id}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        state = self.state
        while not self._stopped.wait(state.interval):
            try:
                self._manager.renew_lease(state.leased.lease, state.duration)
            except (LeaseLostError, RedisStorageError) as exc:
                if state.failed(exc):
                    return
            else:
                state.renewed()

    def stop(self) -> None:
        """Stop renewing and wait for the thread."""
        self._stopped.set()
        self._thread.join()
