"""Retrying acquires (spaced like pharox's) and renewing leases on the server's clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pharox import AcquireEventPayload, InvalidLeaseError, LeaseStatus, ProxyPool, RetryConfig

from pharox_redis import LeaseLostError, RedisStorage

from ..helpers import recomputed_stats, stored_stats
from ..helpers.managers import count, is_async, recording_sleep, reference, seed

# ---------------------------------------------------------------------- retry


def _reference_sleeps(**retry: Any) -> list[float]:
    pool = ProxyPool(name="empty")
    stock = reference(pool, [])
    sleeps: list[float] = []
    assert stock.acquire_proxy_with_retry(pool.name, sleep_fn=sleeps.append, **retry) is None
    return sleeps


def test_retry_spaces_attempts_like_pharox_and_gives_up(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    holder = manager.acquire_proxy(pool.name)
    attempts: list[AcquireEventPayload] = []
    manager.register_acquire_callback(attempts.append)
    retry = {
        "max_attempts": 5,
        "backoff_seconds": 0.01,
        "backoff_multiplier": 3.0,
        "max_backoff_seconds": 0.2,
    }
    sleeps: list[float] = []
    got = manager.acquire_proxy_with_retry(
        pool.name, sleep_fn=recording_sleep(manager, sleeps), **retry
    )
    assert got is None
    assert sleeps == _reference_sleeps(**retry) == pytest.approx([0.01, 0.03, 0.09, 0.2])
    assert len(attempts) == 5 and all(a.lease is None for a in attempts)

    config = RetryConfig(max_attempts=3, backoff_seconds=0.02, backoff_multiplier=2.0)
    sleeps.clear()
    with manager.with_retrying_lease(
        pool.name, retry_config=config, sleep_fn=recording_sleep(manager, sleeps)
    ) as nothing:
        assert nothing is None
    assert sleeps == _reference_sleeps(retry_config=config) == pytest.approx([0.02, 0.04])

    with manager.with_proxy(
        pool.name, retry_config=RetryConfig(max_attempts=2, backoff_seconds=0.01)
    ) as nothing:
        assert nothing is None
    assert count(manager, proxy) == 1
    manager.release_proxy(holder)


def test_retry_gets_the_proxy_once_it_is_released(manager: Any, other: RedisStorage) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    holder = other.create_lease(proxy, "someone-else", 60)
    sleeps: list[float] = []

    def release_on_first_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            other.release_lease(holder)

    sleep_fn: Any = release_on_first_sleep
    if is_async(manager):

        async def async_sleep(seconds: float) -> None:
            release_on_first_sleep(seconds)

        sleep_fn = async_sleep
    with manager.with_retrying_lease(
        pool.name, max_attempts=5, backoff_seconds=0.01, sleep_fn=sleep_fn
    ) as lease:
        assert lease is not None and lease.proxy_id == proxy.id
        assert count(manager, proxy) == 1
    assert sleeps == [0.01, 0.02]
    assert count(manager, proxy) == 0
    lease_again = manager.acquire_proxy_with_retry(pool.name, sleep_fn=sleep_fn)
    assert lease_again is not None and sleeps == [0.01, 0.02]  # no wait when one is free
    manager.release_proxy(lease_again)


# ---------------------------------------------------------------------- renew


def test_renew_moves_the_deadline_on_the_server(
    manager: Any, server_now: Callable[[], datetime]
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=2)
    lease = manager.acquire_proxy(pool.name, duration_seconds=30)
    acquired_at = lease.acquired_at
    before = server_now()
    renewed = manager.renew_lease(lease, 120)
    after = server_now()
    assert renewed is lease
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.ACTIVE
    assert stored.expires_at == lease.expires_at
    assert before + timedelta(seconds=120) <= stored.expires_at <= after + timedelta(seconds=120)
    assert stored.acquired_at == acquired_at
    leased = manager.acquire(pool.name, duration_seconds=30)
    assert leased is not None
    manager.renew_lease(leased, 0.5)  # shorter is allowed too: "from now"
    stored = manager.storage.get_lease(str(leased.lease.id))
    assert stored.expires_at == leased.lease.expires_at
    assert stored.expires_at - leased.lease.acquired_at < timedelta(seconds=30)
    assert count(manager, proxy) == 2


def test_a_renewed_lease_outlives_its_first_duration(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    lease = manager.acquire_proxy(pool.name, duration_seconds=0.3)
    manager.renew_lease(lease, 5)
    time.sleep(0.45)
    assert manager.cleanup_expired_leases() == 0
    assert manager.acquire_proxy(pool.name) is None  # acquire reclaims too: nothing due
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.ACTIVE
    assert count(manager, proxy) == 1
    manager.release_proxy(lease)
    assert count(manager, proxy) == 0


def test_renewing_a_lost_lease_raises_lease_lost(manager: Any) -> None:
    assert issubclass(LeaseLostError, InvalidLeaseError)
    pool, (proxy,) = seed(manager, max_concurrency=None)
    released = manager.acquire_proxy(pool.name)
    manager.release_proxy(released)
    with pytest.raises(LeaseLostError) as info:
        manager.renew_lease(released, 60)
    assert info.value.lease is released

    expired = manager.acquire_proxy(pool.name, duration_seconds=0.2)
    time.sleep(0.3)
    with pytest.raises(LeaseLostError):
        manager.renew_lease(expired, 60)
    assert expired.status is LeaseStatus.RELEASED
    stored = manager.storage.get_lease(str(expired.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED
    assert count(manager, proxy) == 0  # the renew reclaimed it
    with pytest.raises(LeaseLostError):
        manager.renew_lease(expired, 60)  # and it stays lost
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
