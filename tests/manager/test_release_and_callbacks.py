"""Release, the acquire and release callbacks, and the context managers of the managers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pharox import (
    AcquireEventPayload,
    Lease,
    LeaseStatus,
    ProxyFilters,
    ReleaseEventPayload,
    SelectorStrategy,
)

from pharox_redis import LeasedProxy

from ..helpers import recomputed_stats, stored_stats
from ..helpers.managers import count, counters, is_async, seed

# ---------------------------------------------------------------------- callbacks


def test_callbacks_get_pharox_payloads_with_the_stats_after(manager: Any) -> None:
    pool, _ = seed(manager, 3, max_concurrency=1, country="AR")
    acquired: list[AcquireEventPayload] = []
    released: list[ReleaseEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    manager.register_release_callback(released.append)
    awaited: list[Any] = []
    if is_async(manager):

        async def on_acquire(payload: AcquireEventPayload) -> None:
            await asyncio.sleep(0)
            awaited.append(payload)

        async def on_release(payload: ReleaseEventPayload) -> None:
            await asyncio.sleep(0)
            awaited.append(payload)

        manager.register_acquire_callback(on_acquire)
        manager.register_release_callback(on_release)

    filters = ProxyFilters(country="AR")
    lease = manager.acquire_proxy(
        pool.name, consumer_name="cb", filters=filters, selector=SelectorStrategy.LEAST_USED
    )
    assert lease is not None
    (payload,) = acquired
    assert isinstance(payload, AcquireEventPayload)
    assert payload.lease == lease
    assert payload.pool_name == pool.name and payload.consumer_name == "cb"
    assert payload.selector is SelectorStrategy.LEAST_USED
    assert payload.filters is filters
    assert payload.started_at <= payload.completed_at and payload.duration_ms >= 0
    assert payload.pool_stats is not None and payload.pool_stats.pool_name == pool.name
    assert counters(payload.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    assert payload.pool_stats.total_leases == 1 and payload.pool_stats.available_proxies == 2

    # a miss calls back too, with no lease
    assert manager.acquire_proxy(pool.name, filters=ProxyFilters(country="ZZ")) is None
    miss = acquired[-1]
    assert miss.lease is None and miss.consumer_name == "default"
    assert miss.selector is SelectorStrategy.FIRST_AVAILABLE
    assert counters(miss.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    assert manager.acquire_proxy("no-such-pool") is None
    assert acquired[-1].lease is None and acquired[-1].pool_stats is None
    assert acquired[-1].pool_name == "no-such-pool"

    manager.release_proxy(lease)
    (release,) = released
    assert isinstance(release, ReleaseEventPayload)
    assert release.lease.id == lease.id and release.pool_name == pool.name
    assert lease.released_at is not None and release.released_at == lease.released_at
    assert release.lease_duration_ms == int(
        (lease.released_at - lease.acquired_at).total_seconds() * 1000
    )
    assert release.lease_duration_ms is not None and release.lease_duration_ms >= 0
    assert counters(release.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    assert release.pool_stats is not None and release.pool_stats.total_leases == 0

    # the context managers go through the same callbacks
    with manager.with_proxy(pool.name) as leased:
        assert leased is not None
    assert len(acquired) == 4 and len(released) == 2
    assert released[-1].lease.id == leased.lease.id
    if is_async(manager):
        assert [type(p) for p in awaited] == [
            AcquireEventPayload,
            AcquireEventPayload,
            AcquireEventPayload,
            ReleaseEventPayload,
            AcquireEventPayload,
            ReleaseEventPayload,
        ]
        assert awaited[0] is acquired[0] and awaited[3] is released[0]


# ---------------------------------------------------------------------- release


def test_release_is_idempotent_takes_a_leased_proxy_and_stamps_released_at(
    manager: Any,
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=2)
    lease = manager.acquire_proxy(pool.name)
    leased = manager.acquire(pool.name)
    assert lease is not None and leased is not None
    for _ in range(3):
        manager.release_proxy(lease)
        assert count(manager, proxy) == 1
        assert stored_stats(manager.storage, pool)["total_leases"] == 1
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED
    assert lease.released_at is not None and stored.released_at == lease.released_at
    assert lease.released_at >= lease.acquired_at
    manager.release_proxy(leased)  # a LeasedProxy
    assert leased.lease.released_at is not None
    for _ in range(3):
        manager.release_proxy(leased)
        manager.release_proxy(lease)
    assert count(manager, proxy) == 0
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
    stored = manager.storage.get_lease(str(leased.lease.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED


# ---------------------------------------------------------------------- context managers


def test_context_managers_release_on_exit_and_on_exception(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    with manager.with_proxy(pool.name, consumer_name="ctx") as leased:
        assert isinstance(leased, LeasedProxy)
        stored = manager.storage.get_lease(str(leased.lease.id))
        assert stored is not None and stored.status is LeaseStatus.ACTIVE
        assert count(manager, proxy) == 1
    assert leased.lease.released_at is not None
    assert manager.storage.get_lease(str(leased.lease.id)).status is LeaseStatus.RELEASED
    assert count(manager, proxy) == 0

    held: list[Lease] = []
    blocks: list[Callable[[], Any]] = [
        lambda: manager.with_lease(pool.name),
        lambda: manager.with_proxy(pool.name),
        lambda: manager.with_retrying_lease(pool.name, max_attempts=1),
    ]
    for open_block in blocks:
        with pytest.raises(RuntimeError, match="boom"):
            with open_block() as got:
                lease = got.lease if isinstance(got, LeasedProxy) else got
                assert isinstance(lease, Lease)
                held.append(lease)
                assert count(manager, proxy) == 1
                raise RuntimeError("boom")
        assert count(manager, proxy) == 0
    assert all(
        manager.storage.get_lease(str(lease.id)).status is LeaseStatus.RELEASED for lease in held
    )

    with manager.with_lease("no-such-pool") as nothing:
        assert nothing is None
    with manager.with_proxy(pool.name, filters=ProxyFilters(country="ZZ")) as nothing:
        assert nothing is None
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
