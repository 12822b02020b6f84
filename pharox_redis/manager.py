"""``RedisProxyManager``: pharox's ``ProxyManager`` with one round trip per acquire.

A drop-in subclass: the same methods, arguments and callbacks, but each acquire is one
``lua/acquire.lua`` call (no find-then-create race, so contention yields a lease or None,
never ``ProxyUnavailableError``) and each release one ``lua/release.lua`` call; the pool
stats in callback payloads come from those replies. What it does is written once in
``flows.py``; this class performs the steps with a sync storage.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar, Union

from pharox import Lease, ProxyFilters, ProxyManager, RetryConfig, SelectorStrategy

from . import batch_flows, flows, misses, wait_flows
from .bounded import call_within
from .flows import Flow, Notify, Policy, Run
from .handoff import Subscriptions
from .keepalive import ThreadKeepAlive
from .leased_proxy import LeasedProxy
from .misses import AcquireMiss
from .operations.acquire import AcquireRequest
from .outcome import Outcome
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
        self.policy = Policy(
            storage.context, retries, self._acquire_callbacks, self._release_callbacks
        )
        self._subscriptions = Subscriptions(storage.client, storage.context.keys)

    def _perform(self, flow: Flow[T]) -> T:
        """Run a flow of ``flows.py``, performing each step it yields."""
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
                    running = partial(self.storage.executor.run, step.op)
                    if step.timeout is None:
                        result = running()
                    else:
                        result = call_within(running, step.timeout)
                elif isinstance(step, Notify):
                    for callback in step.callbacks:
                        callback(step.payload)
                elif isinstance(step, flows.Listen):
                    result = step.subscription.listen(step.waiter, step.seconds)
                elif isinstance(step, flows.Subscribe):
                    result = self._subscriptions.borrow()
                    result.ensure(step.seconds)
                elif isinstance(step, flows.Unsubscribe):
                    self._subscriptions.give_back(step.subscription)
                else:
                    (step.sleep or time.sleep)(step.seconds)
            except Exception as exc:
                error = exc

    # ------------------------------------------------------------------ acquire

    @property
    def last_miss(self) -> Optional[AcquireMiss]:
        """Return why this thread's last acquire returned None (None when it leased).

        Read from the acquire's own reply, so it costs nothing: an unknown pool, no ACTIVE
        proxy, all busy, cooling down, or no match for the filters (see ``MissReason``).
        Kept per thread (a context variable), for the last acquire of any manager.
        """
        return misses.last_miss()

    def acquire(
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

        One round trip (the first use of a pool or consumer name in a process costs one
        more to resolve it; Python predicates in ``filters`` cost one more per candidate).
        ``target`` (keyword-only) is the domain the proxy is for: proxies blocked for it
        (``Outcome.blocked(domain)``) are skipped, by the walk and by a hand-off to a waiter.

        With ``wait`` (seconds), when no proxy is free the call joins the pool's wait queue
        and blocks, without polling, until a proxy is handed to it (first come, first
        served among the waiters it fits) or ``wait`` has passed (then None). It raises
        :class:`pharox.PoolNotFoundError` at once for an unknown pool, and
        :class:`~pharox_redis.errors.RedisStorageError` when Redis stays unreachable until
        the deadline. ``wait`` None or 0 is the plain acquire. See README, "Waiting for a
        proxy".
        """
        seconds = wait_flows.check_wait(wait)
        asked = flows.request(pool_name, consumer_name, duration_seconds, filters, selector, target)
        if seconds > 0:
            return self._perform(wait_flows.acquire_waiting(self.policy, asked, seconds))
        return self._perform(flows.acquire(self.policy, asked))

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
        *,
        target: Optional[str] = None,
    ) -> Optional[LeasedProxy]:
        """Like :meth:`acquire`, trying again with pharox's backoff while none is available."""

        def asked() -> AcquireRequest:
            return flows.request(
                pool_name, consumer_name, duration_seconds, filters, selector, target
            )

        config = retry_config or RetryConfig()
        return self._perform(flows.acquire_with_retry(self.policy, asked, config, sleep_fn))

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
        config = flows.retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        return leased.lease if leased is not None else None

    # ------------------------------------------------------------------ release, renew

    def release_proxy(
        self, lease: Union[Lease, LeasedProxy], *, outcome: Optional[Outcome] = None
    ) -> None:
        """Release a lease (or a LeasedProxy); idempotent, one round trip.

        When the lease had already reached its deadline (the work overran it, and another
        worker may have had the proxy meanwhile), a warning is logged on the
        ``pharox_redis`` logger and a LeasedProxy is marked lost (``leased.lost``).

        ``outcome`` (:class:`~pharox_redis.Outcome`; by default what a LeasedProxy was
        given with ``report``) says what happened through the proxy and is applied in the
        same call: latency average, cool-down, block for a domain (README, "Outcomes and
        cool-downs"). Applied once per lease, also when the call is sent again; for a lease
        that is not there, nothing is written and a warning is logged.
        """
        self._perform(flows.release(self.policy, lease, outcome=outcome))

    def renew_lease(self, lease: Union[Lease, LeasedProxy], duration_seconds: float) -> Lease:
        """Extend an active lease to end ``duration_seconds`` from now (server clock).

        Updates and returns the lease. Raises
        :class:`~pharox_redis.errors.LeaseLostError` when it expired or was released.
        """
        return self._perform(flows.renew(self.policy, lease, duration_seconds))

    # ------------------------------------------------------------------ rotate, batches

    def rotate(
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

        The next proxy is the one :meth:`acquire` would pick right after the release (with
        ``ROUND_ROBIN`` the next in rotation; with the other selectors it may be the proxy
        just given back). Returns None when no proxy is free; the release is done either way.
        Arguments as for :meth:`acquire` (``consumer_name`` None means ``"default"``, as
        there). When the held lease had already reached its deadline, the rotate still
        acquires, and the loss is reported as :meth:`release_proxy` reports it (a warning,
        and ``leased.lost``). Callbacks see one release event, then one acquire event.
        Python predicates in ``filters`` cost one more round trip per candidate tried, as
        for :meth:`acquire`. A rotate re-sent after a lost reply gets the same new lease and
        releases nothing twice. ``target`` is as for :meth:`acquire`; ``outcome`` as for
        :meth:`release_proxy`, applied with the release before the next proxy is chosen (a
        proxy it cools down or blocks for ``target`` is not picked).
        """
        asked = batch_flows.rotate_request(
            leased, consumer_name, duration_seconds, filters, selector, target
        )
        return self._perform(batch_flows.rotate(self.policy, leased, asked, outcome))

    def acquire_many(
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
        """Lease up to ``k`` proxies of a pool in one round trip; return them in selector order.

        Parameters
        ----------
        pool_name, consumer_name, duration_seconds, filters, selector:
            As for :meth:`acquire`.
        k:
            How many leases to make (1 to 1000).
        all_or_nothing:
            Make ``k`` leases or none (an empty list); by default as many as there are.
        distinct:
            Each proxy takes at most one lease of the batch (the default). With False, a
            proxy takes as many as it has free slots (``max_concurrency`` less its current
            leases; all ``k`` for a proxy without a maximum), filled in selector order.
            Either way no proxy ever holds more than ``max_concurrency`` leases.

        Callbacks see one acquire event per lease made (one with no lease when none was).
        Python predicates cost one round trip per page of candidates and per
        compare-and-lease, as for :meth:`acquire`.

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
        return self._perform(batch_flows.acquire_many(self.policy, asked))

    def release_many(self, leases: Iterable[Union[Lease, LeasedProxy]]) -> None:
        """Release leases (or LeasedProxies) in one round trip, one script call per pool.

        Each is released as :meth:`release_proxy` releases one: idempotent, an overrun logged
        and marked lost, one release event per lease; a LeasedProxy's reported outcome
        (``leased.report``) goes with its release.
        """
        self._perform(batch_flows.release_many(self.policy, list(leases)))

    # ------------------------------------------------------------------ context managers

    @contextmanager
    def _holding(
        self, leased: Optional[LeasedProxy], duration_seconds: float, keep_alive: bool
    ) -> Iterator[Optional[LeasedProxy]]:
        if leased is None:
            yield None
            return
        renewer = None
        if keep_alive:
            renewer = ThreadKeepAlive(self._perform, self.policy, leased, duration_seconds)
        failed = True
        try:
            yield leased
            failed = False
        finally:
            if renewer is not None:
                renewer.stop()
            self._perform(flows.leave(self.policy, leased, keep_alive, failed))

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
        target: Optional[str] = None,
        wait: Optional[float] = None,
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
            leased = self.acquire(
                pool_name,
                consumer_name,
                duration_seconds,
                filters,
                selector,
                target=target,
                wait=wait,
            )
        else:
            leased = self.acquire_with_retry(
                pool_name,
                consumer_name,
                duration_seconds,
                filters,
                selector,
                retry_config,
                target=target,
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
        config = flows.retry_config(
            retry_config, max_attempts, backoff_seconds, backoff_multiplier, max_backoff_seconds
        )
        leased = self.acquire_with_retry(
            pool_name, consumer_name, duration_seconds, filters, selector, config, sleep_fn
        )
        with self._holding(leased, duration_seconds, keep_alive) as held:
            yield held.lease if held is not None else None
