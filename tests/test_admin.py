"""Pools, proxies, health history, key slots, errors and hostile input."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from pharox import (
    Consumer,
    HealthCheckResult,
    PoolNotFoundError,
    ProxyCredentials,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyManager,
    ProxyNotFoundError,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)
from redis.crc import key_slot

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.operations.batch import Command, ScriptCall

from .helpers import BASE_TIME, Recorder, make_pool, make_proxy, recomputed_stats, stored_stats


def _keys_of(storage: RedisStorage) -> list[bytes]:
    return list(storage.client.scan_iter(match=f"{storage.context.keys.prefix}:*", count=1000))


def test_save_pool_upserts_and_rename_keeps_proxies(storage: RedisStorage) -> None:
    pool = make_pool(storage, "before")
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    assert storage.find_available_proxy("before") is not None  # caches the name
    renamed = pool.model_copy(update={"name": "after", "description": "moved"})
    storage.save_pool(renamed)
    assert storage.get_pool(str(pool.id)) == renamed
    assert storage.find_available_proxy("before") is None
    found = storage.find_available_proxy("after")
    assert found is not None and found.id == proxy.id
    assert [p.name for p in storage.list_pools()] == ["after"]
    # A second storage whose cache still says "before" notices the rename.
    storage.save_pool(renamed.model_copy(update={"description": None}))
    assert storage.get_pool(str(pool.id)).description is None


def test_a_taken_pool_name_is_refused_without_writing(storage: RedisStorage) -> None:
    make_pool(storage, "taken")
    other = ProxyPool(name="taken")
    with pytest.raises(ValueError, match="already used"):
        storage.save_pool(other)
    with pytest.raises(PoolNotFoundError):
        storage.get_pool(str(other.id))
    assert len(storage.list_pools()) == 1


def test_stale_name_cache_in_another_process(make_storage: Callable[..., RedisStorage]) -> None:
    a, b = make_storage(), make_storage()
    pool = make_pool(a, "shared")
    a.save_proxy(make_proxy(pool))
    assert b.find_available_proxy("shared") is not None
    a.delete_pool(str(pool.id))
    again = make_pool(a, "shared")  # same name, new id
    fresh = make_proxy(again, 5)
    a.save_proxy(fresh)
    found = b.find_available_proxy("shared")  # b's cache points at the deleted pool
    assert found is not None and found.id == fresh.id
    stats = b.get_pool_stats("shared")
    assert stats is not None and stats.total_proxies == 1


def test_delete_pool_removes_every_key(storage: RedisStorage) -> None:
    keep = make_pool(storage, "keep")
    storage.save_proxy(make_proxy(keep, 99))
    before = set(_keys_of(storage))
    pool = make_pool(storage, "doomed")
    proxies = [make_proxy(pool, n) for n in range(30)]
    storage.add_proxies_bulk(proxies)
    for proxy in proxies[:10]:
        storage.apply_health_check_result(
            HealthCheckResult(
                proxy_id=proxy.id, status=ProxyStatus.ACTIVE, latency_ms=5, protocol=proxy.protocol
            )
        )
    lease = storage.create_lease(proxies[0], "c", 60)
    storage.release_lease(storage.create_lease(proxies[1], "c", 60))
    storage.delete_pool(str(pool.id))
    tag = storage.context.keys.pool(pool.id).tag
    assert not [k for k in _keys_of(storage) if k.decode().startswith(tag)]
    assert set(_keys_of(storage)) <= before | {
        storage.context.keys.globals.deadlines.encode(),
        storage.context.keys.globals.consumers.encode(),
    }
    with pytest.raises(PoolNotFoundError):
        storage.delete_pool(str(pool.id))
    with pytest.raises(PoolNotFoundError):
        storage.list_proxies(str(pool.id))
    assert storage.find_available_proxy("doomed") is None
    storage.release_lease(lease)  # harmless after the pool is gone
    assert storage.cleanup_expired_leases() == 0


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
    for bad in (str(proxy.id), "not-a-uuid", ""):
        with pytest.raises(ProxyNotFoundError):
            storage.get_proxy(bad)
        with pytest.raises(ProxyNotFoundError):
            storage.delete_proxy(bad)
    for bad_pool in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(PoolNotFoundError):
            storage.get_pool(bad_pool)
        with pytest.raises(PoolNotFoundError):
            storage.list_proxies(bad_pool)
        with pytest.raises(PoolNotFoundError):
            storage.delete_pool(bad_pool)
    assert storage.get_lease("not-a-uuid") is None
    assert storage.list_leases("not-a-uuid") == []
    assert stored_stats(storage, pool)["total_proxies"] == 0


def test_bulk_add_validates_everything_before_writing(storage: RedisStorage) -> None:
    pool = make_pool(storage, "real")
    ghost = ProxyPool(name="never-saved")
    good = [make_proxy(pool, n) for n in range(5)]
    with pytest.raises(PoolNotFoundError):
        storage.add_proxies_bulk([*good, make_proxy(ghost, 9)])
    assert storage.list_proxies(str(pool.id)) == []
    broken = make_proxy(pool, 7)
    broken.port = 0  # pydantic does not validate assignment
    with pytest.raises(ValueError, match="port"):
        storage.add_proxies_bulk([*good, broken])
    nan = make_proxy(pool, 8)
    nan.latitude, nan.longitude = float("nan"), 1.0
    with pytest.raises(ValueError, match="latitude"):
        storage.save_proxy(nan)
    assert storage.list_proxies(str(pool.id)) == []
    assert storage.add_proxies_bulk(good) == 5
    assert storage.add_proxies_bulk([]) == 0
    other = make_pool(storage, "other")
    with pytest.raises(ValueError, match="belongs to pool"):
        storage.save_proxy(good[0].model_copy(update={"pool_id": other.id}))
    assert storage.list_proxies(str(other.id)) == []


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


def test_every_script_call_stays_in_one_cluster_slot(storage: RedisStorage) -> None:
    recorder = Recorder(storage)
    pool = make_pool(storage)
    proxies = [make_proxy(pool, n, max_concurrency=1, country="AR") for n in range(6)]
    storage.add_proxies_bulk(proxies)
    manager = ProxyManager(storage)
    for selector in SelectorStrategy:
        lease = manager.acquire_proxy(
            pool.name,
            selector=selector,
            duration_seconds=0.05,
            filters=ProxyFilters(country="AR", predicate=lambda p: True),
        )
        assert lease is not None
    manager.release_proxy(lease)
    fast = RedisProxyManager(storage)
    leased = fast.acquire(pool.name, filters=ProxyFilters(country="AR"))
    assert leased is not None
    fast.renew_lease(leased, 0.05)
    assert fast.acquire(pool.name, filters=ProxyFilters(predicate=lambda p: True)) is not None
    time.sleep(0.1)
    manager.cleanup_expired_leases()
    storage.apply_health_check_result(
        HealthCheckResult(
            proxy_id=proxies[0].id,
            status=ProxyStatus.ACTIVE,
            latency_ms=3,
            protocol=ProxyProtocol.HTTP,
        )
    )
    storage.delete_proxy(str(proxies[1].id))
    storage.delete_pool(str(pool.id))
    names = set()
    for batch in recorder.batches:
        for call in batch.calls:
            if isinstance(call, ScriptCall):
                names.add(call.name)
                assert len({key_slot(k.encode()) for k in call.keys}) == 1, call
        if batch.atomic:
            keys = [c.args[1] for c in batch.calls if isinstance(c, Command)]
            assert len({key_slot(k.encode()) for k in keys}) == 1
    assert names == {
        "acquire",
        "renew",
        "register_pool",
        "save_proxies",
        "find",
        "lease",
        "schedule",
        "release",
        "due",
        "reclaim",
        "health",
        "delete_proxy",
        "unregister_pool",
    }
