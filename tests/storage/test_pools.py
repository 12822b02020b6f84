"""Pools: save (an upsert), rename, names taken, caches of names in other processes, delete."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pharox import HealthCheckResult, PoolNotFoundError, ProxyPool, ProxyStatus

from pharox_redis import RedisStorage

from ..helpers import make_pool, make_proxy
from ..helpers.refusals import contents


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
    before = set(contents(storage))
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
    assert not [k for k in contents(storage) if k.decode().startswith(tag)]
    assert set(contents(storage)) <= before | {
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
