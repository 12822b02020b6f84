"""What both managers do, written once as generators of steps.

A flow yields :class:`Run` (run a storage operation), :class:`Sleep` and :class:`Notify`
(call the acquire or release callbacks), and a waiting acquire (``wait_flows.py``) also
:class:`Subscribe`, :class:`Listen` and :class:`Unsubscribe` (``handoff.py`` performs them);
it is sent each step's result, or has its error thrown in. ``manager.py`` performs the steps
with a sync storage, threads and ``time.sleep``; ``async_manager.py`` awaits them: the two
differ only in how a step is performed. Retries, callback payloads, lease ids and what
leaving a ``with`` block means are all here.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import (
    Any,
    Callable,
    Generator,
    Iterator,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
    Union,
)

import redis
from pharox import (
    AcquireEventPayload,
    InvalidLeaseError,
    Lease,
    ProxyFilters,
    ReleaseEventPayload,
    RetryConfig,
    SelectorStrategy,
)

from . import codec, misses
from .errors import LeaseLostError, RedisStorageError
from .leased_proxy import LeasedProxy, local_deadline
from .misses import AcquireMiss, MissReason
from .operations import acquire as acquiring
from .operations import leases
from .operations.acquire import Acquired, AcquireRequest
from .operations.batch import Op
from .operations.context import Context
from .operations.leases import Released
from .outcome import Outcome, check_outcome, normalize_domain

T = TypeVar("T")
log = logging.getLogger("pharox_redis")
DEFAULT_CONSUMER_NAME = "default"
RETRY_BASE_SECONDS = 0.05


class Run(NamedTuple):
    """Run a storage operation; the flow is sent its result (or its error is thrown in).

    With a ``timeout``, the result is waited for at most that many seconds (see
    ``bounded.py``); then a :class:`~pharox_redis.errors.RedisStorageError` is thrown in.
    """

    op: Op[Any]
    timeout: Optional[float] = None


class Sleep(NamedTuple):
    """Wait ``seconds``, with the caller's ``sleep`` function when one was given."""

    seconds: float
    sleep: Optional[Callable[[float], Any]] = None


class Notify(NamedTuple):
    """Call each callback with the payload (awaiting those that return an awaitable)."""

    callbacks: Sequence[Callable[[Any], Any]]
    payload: Union[AcquireEventPayload, ReleaseEventPayload]


class Subscribe(NamedTuple):
    """Borrow a subscription to a hand-off channel; the flow is sent it (``.channel``).

    One not subscribed yet subscribes, waiting at most ``seconds`` for Redis to confirm.
    """

    seconds: float


class Listen(NamedTuple):
    """Wait at most ``seconds`` for ``waiter``'s hand-off on ``subscription``.

    The flow is sent the hand-off message, or None when none came.
    """

    subscription: Any
    waiter: str
    seconds: float


class Unsubscribe(NamedTuple):
    """Give a subscription back (it stays subscribed, for the next wait)."""

    subscription: Any


Step = Union[Run, Sleep, Notify, Subscribe, Listen, Unsubscribe]
Flow = Generator[Step, Any, T]


def now_utc() -> datetime:
    """Return the current time in UTC (event timestamps, as pharox's manager takes them)."""
    return datetime.now(timezone.utc)


class Observer(Protocol):
    """What a manager tells its observers (``policy.observers``; see ``metrics.py``).

    Called in the thread or task of the call; an observer must be quick and not raise.
    """

    def acquired(self, pool_name: str, miss: Optional[AcquireMiss], seconds: float) -> None:
        """Take note that an acquire ended: leased (``miss`` None) or not, after ``seconds``."""

    def renewed(self, pool_name: str) -> None:
        """Take note that a lease was renewed (by ``renew_lease`` or a keep-alive)."""

    def lost(self, pool_name: str) -> None:
        """Take note that a lease was lost: its deadline passed before renewal or release."""


class Policy:
    """What a manager was configured with: the storage's context, retries and callbacks.

    Parameters
    ----------
    context:
        The storage's context (key schema, settings, caches).
    retries:
        How many times an operation whose reply was lost (connection error or timeout) is
        sent again. Safe: a re-sent acquire carries the same lease id and gets the same
        lease back, and release is idempotent.
    on_acquire, on_release:
        The manager's callback lists (registered later are seen too). With none
        registered, no payload is built and no start time taken.

    """

    def __init__(
        self,
        context: Context,
        retries: int,
        on_acquire: Sequence[Callable[[Any], Any]],
        on_release: Sequence[Callable[[Any], Any]],
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError("retries must be an int >= 0")
        self.context = context
        self.retries = retries
        self.on_acquire = on_acquire
        self.on_release = on_release
        self.observers: list[Observer] = []

    def observe(self, event: str, pool_name: Optional[str], *args: Any) -> None:
        """Tell each observer about an event (a failing observer is logged, never raised)."""
        for observer in self.observers:
            try:
                getattr(observer, event)(pool_name or "", *args)
            except Exception:
                log.exception("observer %r failed on %s", observer, event)

    def retry_delay(self, exc: RedisStorageError, attempt: int) -> Optional[float]:
        """Return seconds to wait before sending attempt ``attempt + 1``, or None to give up.

        Only a lost reply is retried: a connection error or timeout, never a refusal.
        """
        transient = isinstance(exc.__cause__, (redis.ConnectionError, redis.TimeoutError))
        if not transient or attempt >= self.retries:
            return None
        return float(RETRY_BASE_SECONDS * 2**attempt)


def request(
    pool_name: str,
    consumer_name: Optional[str],
    duration_seconds: float,
    filters: Optional[ProxyFilters],
    selector: Optional[SelectorStrategy],
    target: Optional[str] = None,
) -> AcquireRequest:
    """Return the acquire request for these arguments, with a fresh lease id.

    ``target`` (a domain, normalised) makes the acquire skip proxies blocked for it.
    """
    if not isinstance(duration_seconds, (int, float)) or not duration_seconds > 0:
        raise InvalidLeaseError("duration_seconds must be greater than zero.")
    domain = None if target is None else normalize_domain(target, "target")
    return AcquireRequest(
        pool_name=pool_name,
        consumer_name=consumer_name or DEFAULT_CONSUMER_NAME,
        duration_seconds=duration_seconds,
        filters=filters,
        selector=SelectorStrategy(selector or SelectorStrategy.FIRST_AVAILABLE),
        lease_id=codec.new_id(),
        target=domain,
    )


def retried(
    policy: Policy, make_op: Callable[[], Op[T]], within: Optional[LeasedProxy] = None
) -> Flow[T]:
    """Run an operation, sending it again (a fresh run) while its reply is lost.

    With ``within``, each attempt may take at most that lease's remaining time.
    """
    attempt = 0
    while True:
        try:
            timeout = None if within is None else within.remaining
            result: T = yield Run(make_op(), timeout)
            return result
        except RedisStorageError as exc:
            delay = policy.retry_delay(exc, attempt)
            if delay is None or (within is not None and within.remaining <= delay):
                raise
            yield Sleep(delay)
            attempt += 1


def acquire(policy: Policy, asked: AcquireRequest) -> Flow[Optional[LeasedProxy]]:
    """Lease a proxy (one round trip) and notify the acquire callbacks.

    The lease's local deadline counts from before the first attempt was sent. A
    :class:`~pharox_redis.errors.RedisStorageError` carries the request's ``lease_id``.
    """
    started_at = now_utc() if policy.on_acquire else None
    sent_at = time.monotonic()
    try:
        acquired: Acquired = yield from retried(
            policy, lambda: acquiring.acquire(policy.context, asked, bool(policy.on_acquire))
        )
    except RedisStorageError as exc:
        exc.lease_id = asked.lease_id
        raise
    miss = acquired.miss
    if acquired.lease is None and miss is None:  # the proxy was deleted as it was leased
        miss = AcquireMiss(asked.pool_name, MissReason.NO_MATCH)
    misses.noted(miss)
    if policy.observers:
        policy.observe("acquired", asked.pool_name, miss, time.monotonic() - sent_at)
    if started_at is not None:
        yield Notify(policy.on_acquire, acquire_payload(asked, acquired, started_at))
    if acquired.lease is None or acquired.proxy is None:
        return None
    deadline = local_deadline(sent_at, asked.duration_seconds)
    return LeasedProxy(acquired.lease, acquired.proxy, deadline)


def acquire_with_retry(
    policy: Policy,
    make_request: Callable[[], AcquireRequest],
    config: RetryConfig,
    sleep: Optional[Callable[[float], Any]],
) -> Flow[Optional[LeasedProxy]]:
    """Acquire, trying again with pharox's backoff while no proxy is available."""
    delays = retry_delays(config)
    while True:
        leased = yield from acquire(policy, make_request())
        wait = next(delays, None)
        if leased is not None or wait is None:
            return leased
        if wait > 0:
            yield Sleep(wait, sleep)


def release(
    policy: Policy,
    lease: Union[Lease, LeasedProxy],
    bounded: bool = False,
    outcome: Optional[Outcome] = None,
) -> Flow[Released]:
    """Release a lease (idempotent), stamp it released, and notify the release callbacks.

    When the server says the lease had reached its deadline first (the holder overran
    it), a LeasedProxy is marked lost and a warning is logged. With ``bounded``, the
    release may take at most the LeasedProxy's remaining time. The ``outcome`` (by default
    the one a LeasedProxy was given with ``report``) is applied to the proxy in the same
    call, once even when the call is sent again.
    """
    held = unwrap_lease(lease)
    leased = lease if isinstance(lease, LeasedProxy) else None
    outcome = check_outcome(outcome)
    if outcome is None and leased is not None:
        outcome = leased.outcome
    done: Released = yield from retried(
        policy,
        lambda: leases.release(policy.context, held, bool(policy.on_release), outcome),
        leased if bounded else None,
    )
    yield from released(policy, lease, done)
    return done


def released(policy: Policy, lease: Union[Lease, LeasedProxy], done: Released) -> Flow[None]:
    """Stamp a lease released, report an overrun, and notify the release callbacks.

    What follows every release: :func:`release`, and the release part of a rotate or a
    batch release.
    """
    held = unwrap_lease(lease)
    held.released_at = held.released_at or done.released_at or now_utc()
    if done.expired:
        policy.observe("lost", held.pool_name)
        overrun = LeaseLostError(held, "it reached its deadline before it was released")
        if isinstance(lease, LeasedProxy):
            lease.mark_lost(overrun)
        log.warning("%s The work done with it may have overlapped another holder.", overrun)
    if policy.on_release:
        yield Notify(policy.on_release, release_payload(held, done))


def renew(policy: Policy, lease: Union[Lease, LeasedProxy], duration_seconds: float) -> Flow[Lease]:
    """Extend an active lease; :class:`~pharox_redis.errors.LeaseLostError` when it is lost.

    A LeasedProxy's local deadline moves on, counted from before the renewal was sent.
    """
    held = unwrap_lease(lease)
    sent_at = time.monotonic()
    try:
        renewed: Lease = yield from retried(
            policy, lambda: leases.renew(policy.context, held, duration_seconds)
        )
    except LeaseLostError:
        policy.observe("lost", held.pool_name)
        raise
    policy.observe("renewed", held.pool_name)
    if isinstance(lease, LeasedProxy):
        lease.renewed(sent_at, duration_seconds)
    return renewed


def leave(policy: Policy, leased: LeasedProxy, bounded: bool, failed: bool) -> Flow[None]:
    """Release the lease a ``with`` block held, as the block is left.

    A lease already lost is not released (the server ends it at its deadline, and a dead
    connection is not waited for). Unless the block ``failed`` (its own error is what the
    caller sees), :class:`~pharox_redis.errors.LeaseLostError` is raised when the block ran
    without a valid lease: the loss was known before, or the release found the deadline
    passed. With ``bounded`` (a kept-alive lease), the release takes at most the lease's
    remaining time. A release that fails once the deadline has passed is only logged: the
    work was done in time and the server has ended the lease.
    """
    if not leased.lost:
        try:
            yield from release(policy, leased, bounded)
        except RedisStorageError as exc:
            if not leased.lost:
                raise
            # The work was done in time and the lease is over by now: nothing is left to do.
            log.warning(
                "Lease %s ended at its deadline: releasing it failed (%s).", leased.lease.id, exc
            )
            return
    if not failed:
        leased.check()


def acquire_payload(
    asked: AcquireRequest, acquired: Acquired, started_at: datetime
) -> AcquireEventPayload:
    """Build the payload pharox's acquire callbacks receive."""
    completed_at = now_utc()
    return AcquireEventPayload.model_construct(
        lease=acquired.lease,
        pool_name=asked.pool_name,
        consumer_name=asked.consumer_name,
        filters=asked.filters,
        selector=asked.selector,
        started_at=started_at,
        completed_at=completed_at,
        duration_ms=max(0, int((completed_at - started_at).total_seconds() * 1000)),
        pool_stats=acquired.stats(asked.pool_name),
    )


def release_payload(lease: Lease, released: Released) -> ReleaseEventPayload:
    """Build the payload pharox's release callbacks receive."""
    released_at = lease.released_at or now_utc()
    stats = None
    if released.counters is not None and lease.pool_name:
        stats = codec.stats_snapshot(lease.pool_name, released.counters)
    return ReleaseEventPayload.model_construct(
        lease=lease,
        pool_name=lease.pool_name,
        released_at=released_at,
        lease_duration_ms=max(0, int((released_at - lease.acquired_at).total_seconds() * 1000)),
        pool_stats=stats,
    )


def retry_delays(config: RetryConfig) -> Iterator[float]:
    """Yield the waits between acquire attempts, exactly as pharox's manager spaces them."""
    delay = config.backoff_seconds
    for _ in range(config.max_attempts - 1):
        wait = delay
        if config.max_backoff_seconds is not None:
            wait = min(wait, config.max_backoff_seconds)
        yield wait
        delay *= config.backoff_multiplier
        if config.max_backoff_seconds is not None:
            delay = min(delay, config.max_backoff_seconds)


def retry_config(
    config: Optional[RetryConfig],
    max_attempts: int,
    backoff_seconds: float,
    backoff_multiplier: float,
    max_backoff_seconds: Optional[float],
) -> RetryConfig:
    """Return ``config``, or one built from pharox's individual retry parameters."""
    return config or RetryConfig(
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
        backoff_multiplier=backoff_multiplier,
        max_backoff_seconds=max_backoff_seconds,
    )


def unwrap_lease(lease: Any) -> Lease:
    """Return the pharox Lease of a Lease or a LeasedProxy."""
    return lease.lease if isinstance(lease, LeasedProxy) else lease
