"""Leases: create on the server's clock, availability rechecked, release, listing, counters.

Refusals (bad durations, weird ids, wrong types) are in ``tests/hostile``; what each call
costs in round trips in ``tests/storage/round_trips``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timezone

import pytest
from pharox import (
    Consumer,
    HealthCheckResult,
    LeaseStatus,
    ProxyNotFoundError,
    ProxyStatus,
    ProxyUnavailableError,
    SelectorStrategy,
    run_leasing_benchmark,
)

from pharox_redis import RedisStorage

from ..helpers import make_pool, make_proxy, recomputed_stats, server_now, stored_stats


def test_lease_is_stamped_by_the_server_clock(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    before = server_now(storage.client)
    lease = storage.create_lease(proxy, "c", 60)
    after = server_now(storage.client)
    assert lease.acquired_at.tzinfo == timezone.utc
    assert before <= lease.acquired_at <= after
    assert (lease.expires_at - lease.acquired_at).total_seconds() == 60
    assert lease.pool_id == pool.id and lease.pool_name == pool.name
    assert lease.consumer_id == storage.ensure_consumer("c")  # consumer made on the fly
    assert storage.get_lease(str(lease.id)) == lease


def test_create_lease_rechecks_availability(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    full = make_proxy(pool, 1, max_concurrency=2)
    inactive = make_proxy(pool, 2, status=ProxyStatus.INACTIVE)
    storage.add_proxies_bulk([full, inactive])
    storage.create_lease(full, "a", 60)
    storage.create_lease(full, "b", 60)
    with pytest.raises(ProxyUnavailableError):
        storage.create_lease(full, "c", 60)
    with pytest.raises(ProxyUnavailableError):
        storage.create_lease(inactive, "c", 60)
    storage.delete_proxy(str(inactive.id))
    with pytest.raises(ProxyNotFoundError):
        storage.create_lease(inactive, "c", 60)
    assert storage.get_proxy(str(full.id)).current_leases == 2
    # The global index holds one hint per pool with leases, however many leases it has.
    assert storage.client.zcard(storage.context.keys.globals.deadlines) == 1


def test_unlimited_concurrency(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=None)
    storage.save_proxy(proxy)
    for i in range(20):
        storage.create_lease(proxy, f"c{i}", 60)
    assert storage.find_available_proxy(pool.name) is not None
    assert stored_stats(storage, pool) == recomputed_stats(storage, pool)


def test_release_is_idempotent_and_never_below_zero(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=1)
    storage.save_proxy(proxy)
    lease = storage.create_lease(proxy, "c", 60)
    for _ in range(3):
        storage.release_lease(lease)
    assert storage.get_proxy(str(proxy.id)).current_leases == 0
    stored = storage.get_lease(str(lease.id))
    assert stored is not None and stored.status == LeaseStatus.RELEASED
    assert stored.released_at is not None and stored.released_at >= stored.acquired_at
    assert stored_stats(storage, pool)["total_leases"] == 0
    lease.pool_id = None  # a lease without its pool is found by id
    storage.release_lease(lease)
    assert storage.get_proxy(str(proxy.id)).current_leases == 0


def test_releasing_a_reclaimed_lease_leaves_newer_leases_alone(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=1)
    storage.save_proxy(proxy)
    old = storage.create_lease(proxy, "slow-worker", 0.2)  # type: ignore[arg-type]  # a fraction
    time.sleep(0.25)
    assert storage.cleanup_expired_leases() == 1
    new = storage.create_lease(proxy, "other-worker", 60)
    storage.release_lease(old)  # the slow worker comes back late
    assert storage.get_proxy(str(proxy.id)).current_leases == 1
    with pytest.raises(ProxyUnavailableError):
        storage.create_lease(proxy, "third", 60)
    current = storage.get_lease(str(new.id))
    assert current is not None and current.status == LeaseStatus.ACTIVE


def test_leases_listed_by_consumer(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=None)
    storage.save_proxy(proxy)
    storage.add_consumer(Consumer(id=uuid.uuid4(), name="known"))
    mine = [storage.create_lease(proxy, "known", 60) for _ in range(3)]
    storage.create_lease(proxy, "someone-else", 60)
    storage.release_lease(mine[0])
    listed = storage.list_leases(str(storage.ensure_consumer("known")))
    assert {lease.id for lease in listed} == {lease.id for lease in mine}
    assert len(storage.list_leases()) == 4
    assert storage.list_leases(str(uuid.uuid4())) == []


def test_counters_match_recomputation_after_random_operations(storage: RedisStorage) -> None:
    rng = random.Random(5)
    pool = make_pool(storage)
    proxies = [make_proxy(pool, n, max_concurrency=rng.choice([None, 1, 2])) for n in range(12)]
    storage.add_proxies_bulk(proxies)
    for selector in SelectorStrategy:  # build every availability set: each is kept from now
        storage.find_available_proxy(pool.name, selector=selector)
    leases = []
    for _ in range(300):
        action = rng.random()
        proxy = rng.choice(proxies)
        if action < 0.4:
            try:
                leases.append(storage.create_lease(proxy, "c", 60))
            except (ProxyUnavailableError, ProxyNotFoundError):
                pass
        elif action < 0.7 and leases:
            storage.release_lease(leases.pop(rng.randrange(len(leases))))
        elif action < 0.8:
            storage.apply_health_check_result(
                HealthCheckResult(
                    proxy_id=proxy.id,
                    status=rng.choice(list(ProxyStatus)),
                    latency_ms=rng.randint(1, 99),
                    protocol=proxy.protocol,
                )
            )
        elif action < 0.9:
            changed = proxy.model_copy(
                update={
                    "max_concurrency": rng.choice([None, 1, 2, 3]),
                    "status": rng.choice(list(ProxyStatus)),
                    "country": rng.choice(["AR", None]),
                }
            )
            storage.save_proxy(changed)
        elif action < 0.93:
            try:
                storage.delete_proxy(str(proxy.id))
            except ProxyNotFoundError:
                storage.save_proxy(proxy)
        assert stored_stats(storage, pool) == recomputed_stats(storage, pool)
    # every available proxy, and only those, is findable
    keys = storage.context.keys.pool(pool.id)
    for proxy in storage.list_proxies(str(pool.id)):
        free = proxy.status == ProxyStatus.ACTIVE and (
            proxy.max_concurrency is None or proxy.current_leases < proxy.max_concurrency
        )
        for kept in (keys.rr, keys.first, keys.latency):
            assert (storage.client.zscore(kept, str(proxy.id)) is not None) == free
    assert storage.audit().drift == ()


def test_concurrent_ensure_consumer_agrees_on_one_id(
    make_storage: Callable[..., RedisStorage], backend: str
) -> None:
    storages = [make_storage() for _ in range(8)]  # separate caches, one keyspace
    ids: list[object] = []
    barrier = threading.Barrier(len(storages))

    def work(s: RedisStorage) -> None:
        barrier.wait()
        ids.append(s.ensure_consumer("shared-name"))

    threads = [threading.Thread(target=work, args=(s,)) for s in storages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_pharox_leasing_benchmark_runs_unchanged(storage: RedisStorage) -> None:
    result = run_leasing_benchmark(storage, iterations=60, pool_size=8)
    assert result.metadata["hits"] == 60
    stats = storage.get_pool_stats("benchmark-pool")
    assert stats is not None and stats.total_proxies == 8 and stats.total_leases == 0
