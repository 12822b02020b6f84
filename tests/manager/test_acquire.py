"""The managers' acquire: pharox leases on the server's clock, idempotent, safe under races.

Every test runs with RedisProxyManager and AsyncRedisProxyManager (``conftest.py``), each on
fakeredis and on a private redis-server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Optional
from uuid import UUID, uuid4

import pytest
from pharox import (
    AcquireEventPayload,
    InvalidLeaseError,
    Lease,
    LeaseStatus,
    Proxy,
    ProxyCredentials,
    ProxyFilters,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    ReleaseEventPayload,
    SelectorStrategy,
)

from pharox_redis import LeasedProxy, LeaseLostError, RedisStorage
from pharox_redis.operations import acquire
from pharox_redis.operations.acquire import AcquireRequest

from ..helpers import make_pool, make_proxy, recomputed_stats, stored_stats
from ..helpers.managers import count, counters, is_async, run_op, seed

# ---------------------------------------------------------------------- acquire


def test_acquire_proxy_returns_a_pharox_lease_on_the_server_clock(
    manager: Any, server_now: Callable[[], datetime]
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=2)
    before = server_now()
    lease = manager.acquire_proxy(pool.name, consumer_name="worker-1", duration_seconds=45)
    after = server_now()
    assert isinstance(lease, Lease)
    assert lease.proxy_id == proxy.id
    assert lease.pool_name == pool.name and lease.pool_id == pool.id
    assert lease.consumer_id == manager.storage.ensure_consumer("worker-1")
    assert lease.status is LeaseStatus.ACTIVE and lease.released_at is None
    assert before <= lease.acquired_at <= after
    assert lease.expires_at - lease.acquired_at == timedelta(seconds=45)
    assert manager.storage.get_lease(str(lease.id)) == lease
    assert count(manager, proxy) == 1
    default = manager.acquire_proxy(pool.name, duration_seconds=1.5)
    assert default is not None
    assert default.consumer_id == manager.storage.ensure_consumer("default")
    assert default.expires_at - default.acquired_at == timedelta(seconds=1.5)
    assert count(manager, proxy) == 2
    assert manager.acquire_proxy(pool.name) is None  # max_concurrency 2


def test_acquire_returns_the_proxy_with_its_credentials_and_url(manager: Any) -> None:
    pool = make_pool(manager.storage, "creds")
    proxy = Proxy(
        host="2001:db8::7",
        port=1080,
        protocol=ProxyProtocol.SOCKS5,
        pool_id=pool.id,
        status=ProxyStatus.ACTIVE,
        credentials=ProxyCredentials(user="us er@corp", password="p:a/ss%w?rd#&=+ñ"),
        max_concurrency=3,
        country="AR",
    )
    manager.storage.save_proxy(proxy)
    first = manager.acquire(pool.name, consumer_name="c", duration_seconds=30)
    assert isinstance(first, LeasedProxy)
    assert first.lease.proxy_id == proxy.id and first.proxy.id == proxy.id
    assert str(first.proxy.host) == str(proxy.host) and first.proxy.port == 1080
    assert first.proxy.protocol is ProxyProtocol.SOCKS5
    assert first.proxy.credentials == proxy.credentials
    assert first.proxy.country == "AR" and first.proxy.max_concurrency == 3
    stored = manager.storage.get_proxy(str(proxy.id))
    assert first.url == proxy.url == stored.url
    assert first.url.startswith("socks5://us+er%40corp:p%3Aa%2Fss%25w%3Frd%23%26%3D%2B%C3%B1@")
    assert first.url.endswith("@[2001:db8::7]:1080")
    assert first.proxy.current_leases == 1 == stored.current_leases
    second = manager.acquire(pool.name, consumer_name="c", duration_seconds=30)
    assert second is not None and second.proxy.current_leases == 2
    assert second.lease.id != first.lease.id
    assert manager.storage.get_lease(str(second.lease.id)) == second.lease


@pytest.mark.parametrize("duration", [0, -1, float("nan"), "x"])
def test_bad_durations_are_refused_before_anything_is_written(
    manager: Any, duration: object
) -> None:
    """Acquire and renew refuse alike; a renewal refused is not a lease lost."""
    pool, (proxy,) = seed(manager)
    lease = manager.acquire_proxy(pool.name, duration_seconds=60)
    with pytest.raises(InvalidLeaseError):
        manager.acquire_proxy(pool.name, duration_seconds=duration)
    with pytest.raises(InvalidLeaseError):
        manager.acquire(pool.name, duration_seconds=duration)
    with pytest.raises(InvalidLeaseError) as info:
        manager.renew_lease(lease, duration)
    assert not isinstance(info.value, LeaseLostError)
    stored = manager.storage.get_lease(str(lease.id))
    assert stored == lease and stored.status is LeaseStatus.ACTIVE
    assert count(manager, proxy) == 1
    assert [held.id for held in manager.storage.list_leases()] == [lease.id]


# ---------------------------------------------------------------------- idempotence and races


def test_an_acquire_sent_twice_makes_one_lease(manager: Any) -> None:
    pool, proxies = seed(manager, 2, max_concurrency=None)
    storage = manager.storage
    for filters in (None, ProxyFilters(predicate=lambda p: p.id == proxies[1].id)):
        request = AcquireRequest(
            pool_name=pool.name,
            consumer_name="retrier",
            duration_seconds=60,
            filters=filters,
            selector=SelectorStrategy.FIRST_AVAILABLE,
            lease_id=uuid4(),
        )
        first = run_op(manager, acquire.acquire(storage.context, request))
        second = run_op(manager, acquire.acquire(storage.context, request, with_counters=True))
        assert first.lease is not None and second.lease is not None
        assert first.proxy is not None and second.proxy is not None
        assert first.lease.id == second.lease.id == request.lease_id
        assert second.lease == first.lease
        assert second.proxy.id == first.proxy.id
        proxy = next(p for p in proxies if p.id == first.proxy.id)
        assert count(manager, proxy) == 1
        assert stored_stats(storage, pool)["total_leases"] == 1
        assert second.stats(pool.name).total_leases == 1
        manager.release_proxy(first.lease)
        # once released, a late retry holds nothing and takes nothing
        late = run_op(manager, acquire.acquire(storage.context, request))
        assert late.lease is None
        assert count(manager, proxy) == 0
    assert len(storage.list_leases()) == 2


def test_a_candidate_taken_meanwhile_is_skipped_never_raised(
    manager: Any, other: RedisStorage
) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=1)
    order = sorted(proxies, key=lambda p: p.checked_at, reverse=True)  # FIRST_AVAILABLE
    stolen: list[UUID] = []

    def steal(limit: int) -> Callable[[Proxy], bool]:
        def predicate(proxy: Proxy) -> bool:
            if proxy.id not in stolen and len(stolen) < limit:
                # another worker leases this very candidate between the scan and the
                # compare-and-lease
                other.create_lease(proxy, "thief", 60)
                stolen.append(proxy.id)
            return True

        return predicate

    acquired: list[AcquireEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    lease = manager.acquire_proxy(pool.name, filters=ProxyFilters(predicate=steal(1)))
    assert stolen == [order[0].id]
    assert lease is not None and lease.proxy_id == order[1].id
    assert [count(manager, p) for p in order] == [1, 1, 0]

    # every candidate is taken under its feet: None, not ProxyUnavailableError
    lease2 = manager.acquire_proxy(pool.name, filters=ProxyFilters(predicate=steal(3)))
    assert lease2 is None
    assert stolen == [order[0].id, order[2].id]
    assert acquired[-1].lease is None
    assert [count(manager, p) for p in order] == [1, 1, 1]
    stats = stored_stats(manager.storage, pool)
    assert stats == recomputed_stats(manager.storage, pool)
    assert stats["total_leases"] == 3 and stats["available_proxies"] == 0
    assert manager.acquire_proxy(pool.name) is None


def test_a_miss_after_lost_races_reports_the_stats_after(manager: Any, other: RedisStorage) -> None:
    """The miss payload's pool_stats must not predate leases the manager ran into."""
    pool, _ = seed(manager, 2, max_concurrency=1)

    def taken_meanwhile(proxy: Proxy) -> bool:
        other.create_lease(proxy, "thief", 60)
        return True

    acquired: list[AcquireEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    assert manager.acquire_proxy(pool.name, filters=ProxyFilters(predicate=taken_meanwhile)) is None
    (miss,) = acquired
    assert miss.lease is None
    assert counters(manager.storage.get_pool_stats(pool.name))["total_leases"] == 2
    assert counters(miss.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))


# ---------------------------------------------------------------------- concurrency, failures


def test_concurrent_acquires_never_exceed_max_concurrency(manager: Any) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=2)
    n = 10
    if is_async(manager):
        leases = manager.gather(manager.target.acquire_proxy(pool.name) for _ in range(n))
    else:
        barrier = threading.Barrier(n)

        def one(_: int) -> Optional[Lease]:
            barrier.wait()
            lease: Optional[Lease] = manager.acquire_proxy(pool.name)
            return lease

        with ThreadPoolExecutor(n) as executor:
            leases = list(executor.map(one, range(n)))
    got = [lease for lease in leases if lease is not None]
    assert len(got) == 6 and len({lease.id for lease in got}) == 6
    assert [count(manager, p) for p in proxies] == [2, 2, 2]
    assert sorted(lease.proxy_id for lease in got) == sorted([p.id for p in proxies] * 2)
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)


def test_a_pool_replaced_under_the_same_name_is_found(manager: Any, other: RedisStorage) -> None:
    pool, _ = seed(manager)
    manager.release_proxy(manager.acquire_proxy(pool.name))  # the manager knows the pool's id
    other.delete_pool(str(pool.id))
    replacement = ProxyPool(name=pool.name)
    other.save_pool(replacement)
    new_proxy = make_proxy(replacement, 9)
    other.save_proxy(new_proxy)
    lease = manager.acquire_proxy(pool.name)
    assert lease is not None
    assert lease.pool_id == replacement.id and lease.proxy_id == new_proxy.id
    assert other.get_proxy(str(new_proxy.id)).current_leases == 1


def test_a_lease_of_a_deleted_pool_is_lost(manager: Any, other: RedisStorage) -> None:
    pool, _ = seed(manager)
    released: list[ReleaseEventPayload] = []
    manager.register_release_callback(released.append)
    lease = manager.acquire_proxy(pool.name)
    other.delete_pool(str(pool.id))
    with pytest.raises(LeaseLostError):
        manager.renew_lease(lease, 60)
    manager.release_proxy(lease)  # nothing to release: no error
    (payload,) = released
    assert payload.lease.id == lease.id and payload.pool_stats is None
    assert manager.acquire_proxy(pool.name) is None
