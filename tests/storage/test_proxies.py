"""Proxies: save (keeping the lease count), read, delete, bulk add, health history and latency."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from pharox import (
    HealthCheckResult,
    PoolNotFoundError,
    ProxyCredentials,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyNotFoundError,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import RedisStorage

from ..helpers import BASE_TIME, make_pool, make_proxy, recomputed_stats, stored_stats


def test_save_proxy_keeps_the_lease_count_and_reindexes(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(
        pool,
        max_concurrency=3,
        country="AR",
        credentials=ProxyCredentials(user="u:s@r", password="p/w d"),
    )
    storage.save_proxy(proxy)
    storage.create_lease(proxy, "c", 60)
    stored = storage.get_proxy(str(proxy.id))
    assert stored.current_leases == 1
    assert stored.model_dump() == proxy.model_copy(update={"current_leases": 1}).model_dump()
    assert stored.url == proxy.url
    storage.save_proxy(proxy.model_copy(update={"max_concurrency": 1, "country": "CL"}))
    assert storage.get_proxy(str(proxy.id)).current_leases == 1
    assert storage.find_available_proxy(pool.name) is None  # now full
    storage.save_proxy(proxy.model_copy(update={"max_concurrency": 2, "country": "CL"}))
    assert storage.find_available_proxy(pool.name, ProxyFilters(country="CL")) is not None
    assert storage.find_available_proxy(pool.name, ProxyFilters(country="AR")) is None
    storage.save_proxy(proxy.model_copy(update={"status": ProxyStatus.BANNED}))
    assert storage.find_available_proxy(pool.name) is None
    assert stored_stats(storage, pool) == recomputed_stats(storage, pool)


def test_proxy_crud_and_not_found(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    assert storage.get_proxy_by_id(proxy.id) == storage.get_proxy(str(proxy.id))
    assert [p.id for p in storage.list_proxies(str(pool.id))] == [proxy.id]
    storage.delete_proxy(str(proxy.id))
    # Ids that are not UUIDs: hostile/test_ids.py. Here: a deleted proxy, an unknown pool.
    with pytest.raises(ProxyNotFoundError):
        storage.get_proxy(str(proxy.id))
    with pytest.raises(ProxyNotFoundError):
        storage.delete_proxy(str(proxy.id))
    unknown = str(uuid.uuid4())
    with pytest.raises(PoolNotFoundError):
        storage.get_pool(unknown)
    with pytest.raises(PoolNotFoundError):
        storage.list_proxies(unknown)
    with pytest.raises(PoolNotFoundError):
        storage.delete_pool(unknown)
    assert stored_stats(storage, pool)["total_proxies"] == 0


def test_bulk_add_counts_and_a_proxy_never_moves_between_pools(storage: RedisStorage) -> None:
    """Refusals of a bulk save (one bad proxy, an unknown pool) are in hostile/."""
    pool = make_pool(storage, "real")
    good = [make_proxy(pool, n) for n in range(5)]
    assert storage.add_proxies_bulk(good) == 5
    assert storage.add_proxies_bulk([]) == 0
    other = make_pool(storage, "other")
    with pytest.raises(ValueError, match="belongs to pool"):
        storage.save_proxy(good[0].model_copy(update={"pool_id": other.id}))
    assert storage.list_proxies(str(other.id)) == []
    assert len(storage.list_proxies(str(pool.id))) == 5


def test_health_results_history_and_latency(make_storage: Callable[..., RedisStorage]) -> None:
    storage = make_storage(health_history=5)
    pool = make_pool(storage)
    fast, slow = make_proxy(pool, 1), make_proxy(pool, 2)
    storage.add_proxies_bulk([fast, slow])
    assert storage.get_last_health_result(fast.id) is None
    checked = BASE_TIME + timedelta(hours=1)
    updated = storage.apply_health_check_result(
        HealthCheckResult(
            proxy_id=slow.id,
            status=ProxyStatus.SLOW,
            latency_ms=900,
            protocol=ProxyProtocol.HTTP,
            checked_at=checked,
            error_message="slow",
        )
    )
    assert updated is not None and updated.status == ProxyStatus.SLOW
    assert updated.checked_at == checked
    last = storage.get_last_health_result(slow.id)
    assert last is not None and (last.status, last.latency_ms, last.error_message) == (
        ProxyStatus.SLOW,
        900,
        "slow",
    )
    records = storage.list_health_records(slow.id)
    assert records[0].status_before == ProxyStatus.ACTIVE and records[0].reachable
    for i in range(8):
        storage.apply_health_check_result(
            HealthCheckResult(
                proxy_id=fast.id,
                status=ProxyStatus.ACTIVE,
                latency_ms=100 - i,
                protocol=ProxyProtocol.HTTP,
                checked_at=checked + timedelta(minutes=i),
            )
        )
    history = storage.list_health_records(fast.id)
    assert [r.latency_ms for r in history] == [93, 94, 95, 96, 97]  # newest first, capped
    assert [r.latency_ms for r in storage.list_health_records(fast.id, limit=2)] == [93, 94]
    # an older record does not replace the latest latency; an unreachable one has none
    storage.save_health_record(
        ProxyHealthRecord(
            proxy_id=fast.id,
            checked_at=BASE_TIME,
            reachable=True,
            latency_ms=1,
            protocol=ProxyProtocol.HTTP,
            status_after=ProxyStatus.ACTIVE,
        )
    )
    storage.save_health_record(
        ProxyHealthRecord(
            proxy_id=fast.id,
            checked_at=checked + timedelta(days=1),
            reachable=False,
            latency_ms=None,
            protocol=ProxyProtocol.HTTP,
            status_after=ProxyStatus.INACTIVE,
        )
    )
    other = make_proxy(pool, 3)
    storage.save_proxy(other)
    storage.apply_health_check_result(
        HealthCheckResult(
            proxy_id=other.id, status=ProxyStatus.ACTIVE, latency_ms=94, protocol=ProxyProtocol.HTTP
        )
    )
    best = storage.find_available_proxy(pool.name, selector=SelectorStrategy.LOWEST_LATENCY)
    assert best is not None and best.id == fast.id  # 93 ms beats 94 ms
    storage.save_proxy(storage.get_proxy(str(fast.id)))  # saving keeps the latency
    best = storage.find_available_proxy(pool.name, selector=SelectorStrategy.LOWEST_LATENCY)
    assert best is not None and best.id == fast.id
    missing = HealthCheckResult(
        proxy_id=uuid.uuid4(), status=ProxyStatus.ACTIVE, latency_ms=1, protocol=ProxyProtocol.HTTP
    )
    assert storage.apply_health_check_result(missing) is None
    with pytest.raises(ProxyNotFoundError):
        storage.save_health_record(
            ProxyHealthRecord(
                proxy_id=missing.proxy_id,
                reachable=True,
                protocol=ProxyProtocol.HTTP,
                status_after=ProxyStatus.ACTIVE,
            )
        )
