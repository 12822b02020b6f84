"""What the sync and async managers share besides the storage operations.

Both managers take the same arguments, build the same callback payloads, retry the same
errors and keep leases alive on the same schedule; only sleeping, threads versus tasks and
``await`` differ, and those stay in ``manager.py`` and ``async_manager.py``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterator, Optional
from uuid import uuid4

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

from .core import StorageCore, stats_snapshot
from .errors import LeaseLostError, RedisStorageError
from .leased import LeasedProxy
from .leasing import Acquired, AcquireRequest, Released, now_utc

DEFAULT_CONSUMER_NAME = "default"
RETRY_BASE_SECONDS = 0.05


class ManagerCore:
    """Argument handling, payloads, retry and keep-alive policy of both managers.

    Parameters
    ----------
    core:
        The storage core the manager drives.
    retries:
        How many times an operation whose reply was lost (connection error or timeout) is
        sent again. Safe: a re-sent acquire carries the same lease id and gets the same
        lease back, and release is idempotent.

    """

    def __init__(self, core: StorageCore, retries: int) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.core = core
        self.retries = retries

    def request(
        self,
        pool_name: str,
        consumer_name: Optional[str],
        duration_seconds: float,
        filters: Optional[ProxyFilters],
        selector: Optional[SelectorStrategy],
    ) -> AcquireRequest:
        """Return the acquire request for these arguments, with a fresh lease id."""
        if not isinstance(duration_seconds, (int, float)) or not duration_seconds > 0:
            raise InvalidLeaseError("duration_seconds must be greater than zero.")
        return AcquireRequest(
            pool_name=pool_name,
            consumer_name=consumer_name or DEFAULT_CONSUMER_NAME,
            duration_seconds=duration_seconds,
            filters=filters,
            selector=SelectorStrategy(selector or SelectorStrategy.FIRST_AVAILABLE),
            lease_id=uuid4(),
        )

    def retry_delay(self, exc: RedisStorageError, attempt: int) -> Optional[float]:
        """Return seconds to wait before sending attempt ``attempt + 1``, or None to give up.

        Only a lost reply is retried: a connection error or timeout, never a refusal.
        """
        transient = isinstance(exc.__cause__, (redis.ConnectionError, redis.TimeoutError))
        if not transient or attempt >= self.retries:
            return None
        return float(RETRY_BASE_SECONDS * 2**attempt)

    @staticmethod
    def acquire_payload(
        request: AcquireRequest, acquired: Acquired, started_at: datetime
    ) -> AcquireEventPayload:
        """Build the payload pharox's acquire callbacks receive."""
        completed_at = now_utc()
        return AcquireEventPayload.model_construct(
            lease=acquired.leased.lease if acquired.leased else None,
            pool_name=request.pool_name,
            consumer_name=request.consumer_name,
            filters=request.filters,
            selector=request.selector,
            started_at=started_at,
            completed_at=completed_at,
            duration_ms=max(0, int((completed_at - started_at).total_seconds() * 1000)),
            pool_stats=acquired.stats(request.pool_name),
        )

    @staticmethod
    def release_payload(lease: Lease, released: Released) -> ReleaseEventPayload:
        """Build the payload pharox's release callbacks receive."""
        released_at = lease.released_at or now_utc()
        stats = None
        if released.counters is not None and lease.pool_name:
            stats = stats_snapshot(lease.pool_name, released.counters)
        return ReleaseEventPayload.model_construct(
            lease=lease,
            pool_name=lease.pool_name,
            released_at=released_at,
            lease_duration_ms=max(0, int((released_at - lease.acquired_at).total_seconds() * 1000)),
            pool_stats=stats,
        )

    @staticmethod
    def mark_released(lease: Lease, released: Released) -> None:
        """Stamp a released lease with the server's release time (as pharox's manager does)."""
        lease.released_at = lease.released_at or released.released_at or now_utc()


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


def build_retry_config(
    retry_config: Optional[RetryConfig],
    max_attempts: int,
    backoff_seconds: float,
    backoff_multiplier: float,
    max_backoff_seconds: Optional[float],
) -> RetryConfig:
    """Return ``retry_config``, or one built from the individual parameters."""
    return retry_config or RetryConfig(
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
        backoff_multiplier=backoff_multiplier,
        max_backoff_seconds=max_backoff_seconds,
    )


class KeepAliveState:
    """When to renew a kept-alive lease and when to give it up.

    A lease is renewed to ``duration`` from now every ``duration / 3`` seconds. A renewal
    that finds the lease lost marks it lost at once; renewals that fail for lack of Redis
    mark it lost once the last successful renewal is ``duration`` old, because by then the
    lease has expired on the server.

    Parameters
    ----------
    leased:
        The lease to keep alive; a loss is recorded on it.
    duration_seconds:
        Each renewal extends the lease to this many seconds from then.
    clock:
        Monotonic clock (tests may replace it).

    """

    def __init__(
        self,
        leased: LeasedProxy,
        duration_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leased = leased
        self.duration = float(duration_seconds)
        self.interval = max(0.01, self.duration / 3)
        self.clock = clock
        self.renewed_at = clock()

    def renewed(self) -> None:
        """Note a successful renewal."""
        self.renewed_at = self.clock()

    def failed(self, exc: Exception) -> bool:
        """Note a failed renewal; return True when the lease is now known to be lost."""
        if isinstance(exc, LeaseLostError):
            self.leased.mark_lost(exc)
            return True
        if self.clock() - self.renewed_at >= self.duration:
            lost = LeaseLostError(self.leased.lease, f"it could not be renewed in time ({exc})")
            lost.__cause__ = exc
            self.leased.mark_lost(lost)
            return True
        return False


def unwrap_lease(lease: Any) -> Lease:
    """Return the pharox Lease of a Lease or a LeasedProxy."""
    return lease.lease if isinstance(lease, LeasedProxy) else lease
