"""Leases: creation, release, expiry, counters, history retention, round trips."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import timezone
from uuid import UUID

import pytest
from pharox import (
    HealthCheckResult,
    InvalidLeaseError,
    LeaseStatus,
    ProxyManager,
    ProxyNotFoundError,
    ProxyStatus,
    ProxyUnavailableError,
    run_leasing_benchmark,
)

from pharox_redis import RedisStorage

from .helpers import Recorder, make_pool, make_proxy, recomputed_stats, stored_stats


def test_lease_is_stamped_by_the_server_clock(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    seconds, micros = storage.client.time()
    lease = storage.create_lease(proxy, "c", 60)
    server_now = seconds + micros / 1e6
    assert lease.acquired_at.tzinfo == timezone.utc
    assert abs(lease.acquired_at.timestamp() - server_now) < 2
    assert (lease.expires_at - lease.acquired_at).total_seconds() == 60
    assert lease.pool_id == pool.id and lease.pool_name == pool.name
    assert lease.consumer_id == storage.ensure_consumer("c")  # consumer made on the fly
    assert storage.get_lease(str(lease.id)) == lease


@pytest.mark.parametrize("duration", [0, -1, float("nan"), float("inf"), 10**12, "5", True])
def test_bad_durations_are_refused_and_write_nothing(
    storage: RedisStorage, duration: object
) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    with pytest.raises(InvalidLeaseError):
        storage.create_lease(proxy, "c", duration)  # type: ignore[arg-type]
    assert storage.list_leases() == []
    assert stored_stats(storage, pool)["total_leases"] == 0


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
    old = storage.create_lease(proxy, "slow-worker", 0.2)
    time.sleep(0.25)
    assert storage.cleanup_expired_leases() == 1
    new = storage.create_lease(proxy, "other-worker", 60)
    storage.release_lease(old)  # the slow worker comes back late
    assert storage.get_proxy(str(proxy.id)).current_leases == 1
    with pytest.raises(ProxyUnavailableError):
        storage.create_lease(proxy, "third", 60)
    current = storage.get_lease(str(new.id))
    assert current is not None and current.status == LeaseStatus.ACTIVE


def test_expiry_is_never_early(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=1)
    storage.save_proxy(proxy)
    storage.create_lease(proxy, "c", 1.0)
    time.sleep(0.5)
    assert storage.cleanup_expired_leases() == 0
    assert storage.find_available_proxy(pool.name) is None
    time.sleep(0.6)
    assert storage.cleanup_expired_leases() == 1
    assert storage.find_available_proxy(pool.name) is not None


def test_cleanup_costs_one_round_trip_when_nothing_expired(storage: RedisStorage) -> None:
    pools = [make_pool(storage, f"p{i}") for i in range(5)]
    proxies = [make_proxy(pool, n, max_concurrency=None) for pool in pools for n in range(40)]
    storage.add_proxies_bulk(proxies)
    for proxy in proxies[::3]:
        storage.release_lease(storage.create_lease(proxy, "c", 60))  # history
        storage.create_lease(proxy, "c", 60)  # active, not expired
    recorder = Recorder(storage)
    assert storage.cleanup_expired_leases() == 0
    assert len(recorder.batches) == 1 and len(recorder.calls) == 1
    # Expired leases in two pools: due pools, one pipelined reclaim per pool, then the
    # hints go back with the next due call, which finds nothing more.
    for proxy in (proxies[0], proxies[1], proxies[45]):
        storage.create_lease(proxy, "c", 0.1)
    time.sleep(0.15)
    recorder.reset()
    assert storage.cleanup_expired_leases() == 3
    assert [len(b.calls) for b in recorder.batches] == [1, 2, 1]
    assert all(stored_stats(storage, p) == recomputed_stats(storage, p) for p in pools)
    # Every pool still holds 60 s leases: each keeps one hint, none of them due now.
    hints = storage.client.zrange(storage.context.keys.globals.deadlines, 0, -1, withscores=True)
    assert {UUID(m.decode()) for m, _ in hints} == {p.id for p in pools}
    assert all(score > time.time() * 1e6 + 50e6 for _, score in hints)


def test_cleanup_reclaims_more_than_one_batch(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=None)
    storage.save_proxy(proxy)
    for i in range(300):  # above DUE_BATCH and RECLAIM_BATCH
        storage.create_lease(proxy, f"c{i % 7}", 0.1)
    time.sleep(0.15)
    assert storage.cleanup_expired_leases() == 300
    assert storage.get_proxy(str(proxy.id)).current_leases == 0
    assert storage.client.zcard(storage.context.keys.globals.deadlines) == 0


def test_lease_history_is_bounded_by_the_retention(
    make_storage: Callable[..., RedisStorage],
) -> None:
    storage = make_storage(lease_retention_seconds=0.2)
    pool = make_pool(storage)
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    first = [storage.create_lease(proxy, "c", 60) for _ in range(60)]
    for lease in first:
        storage.release_lease(lease)
    keys = storage.context.keys.pool(pool.id)
    assert storage.client.hlen(keys.leases) == 60
    time.sleep(0.25)
    for _ in range(4):  # each call purges up to 32 expired records
        storage.release_lease(storage.create_lease(proxy, "c", 60))
    assert storage.get_lease(str(first[0].id)) is None
    assert storage.client.hlen(keys.leases) == 4
    assert storage.client.zcard(keys.history) == 4


def test_counters_match_recomputation_after_random_operations(storage: RedisStorage) -> None:
    rng = random.Random(5)
    pool = make_pool(storage)
    proxies = [make_proxy(pool, n, max_concurrency=rng.choice([None, 1, 2])) for n in range(12)]
    storage.add_proxies_bulk(proxies)
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
    for proxy in storage.list_proxies(str(pool.id)):
        free = proxy.status == ProxyStatus.ACTIVE and (
            proxy.max_concurrency is None or proxy.current_leases < proxy.max_concurrency
        )
        assert (
            storage.client.zscore(storage.context.keys.pool(pool.id).rr, str(proxy.id)) is not None
        ) == free


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


def test_stock_manager_round_trips(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    storage.add_proxies_bulk([make_proxy(pool, n) for n in range(8)])
    manager = ProxyManager(storage)
    manager.acquire_proxy(pool.name, consumer_name="w")  # warms the name caches
    recorder = Recorder(storage)
    lease = manager.acquire_proxy(pool.name, consumer_name="w")
    assert lease is not None
    assert len(recorder.batches) == 4  # cleanup, find, create (+ index), stats
    recorder.reset()
    manager.release_proxy(lease)
    assert len(recorder.batches) == 2  # release (+ index), stats


def test_pharox_leasing_benchmark_runs_unchanged(storage: RedisStorage) -> None:
    result = run_leasing_benchmark(storage, iterations=60, pool_size=8)
    assert result.metadata["hits"] == 60
    stats = storage.get_pool_stats("benchmark-pool")
    assert stats is not None and stats.total_proxies == 8 and stats.total_leases == 0
