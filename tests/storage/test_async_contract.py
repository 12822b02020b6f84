"""pharox's own storage contract suite, run against AsyncRedisStorage.

pharox's suite is synchronous, so the async storage runs behind ``AsyncFacade``: every
coroutine method is run to completion on the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from pharox import LeaseStatus, Proxy, ProxyPool
from pharox.tests.adapters import StorageContractFixtures, storage_contract_suite

from pharox_redis import AsyncRedisStorage, RedisStorage

from ..conftest import DEPLOYMENTS
from ..helpers import AsyncFacade, make_pool, make_proxy, recomputed_stats, stored_stats

# The contract suite runs on every deployment: also on a Redis Cluster and behind Sentinel.
on_every_deployment = pytest.mark.parametrize("backend", DEPLOYMENTS, indirect=True)


def _seed_pool(storage: Any, pool: ProxyPool) -> ProxyPool:
    storage.save_pool(pool)
    stored: ProxyPool = storage.get_pool(str(pool.id))
    return stored


def _seed_proxy(storage: Any, proxy: Proxy) -> Proxy:
    storage.save_proxy(proxy)
    stored: Proxy = storage.get_proxy(str(proxy.id))
    return stored


def _fixtures(make: Callable[[], Any]) -> StorageContractFixtures:
    return StorageContractFixtures(make_storage=make, seed_pool=_seed_pool, seed_proxy=_seed_proxy)


@on_every_deployment
def test_pharox_contract_suite(
    make_async_storage: Callable[..., AsyncRedisStorage], loop: asyncio.AbstractEventLoop
) -> None:
    storage_contract_suite(_fixtures(lambda: AsyncFacade(make_async_storage(), loop)))


@on_every_deployment
def test_pharox_contract_suite_decoded_responses(
    make_async_storage: Callable[..., AsyncRedisStorage], loop: asyncio.AbstractEventLoop
) -> None:
    storage_contract_suite(
        _fixtures(lambda: AsyncFacade(make_async_storage(decode_responses=True), loop))
    )


def test_async_and_sync_storages_share_one_keyspace(
    make_async_storage: Callable[..., AsyncRedisStorage],
    make_storage: Callable[..., RedisStorage],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """What the async storage writes, the sync one reads, and the other way round."""
    sync = make_storage()
    facade = AsyncFacade(make_async_storage(), loop)
    pool = make_pool(facade)
    proxies = [make_proxy(pool, n, max_concurrency=2) for n in range(3)]
    assert facade.add_proxies_bulk(proxies) == 3
    lease = facade.create_lease(proxies[0], "async-worker", 60)
    assert sync.get_lease(str(lease.id)) == lease
    other = sync.create_lease(proxies[0], "sync-worker", 60)
    assert facade.get_proxy(str(proxies[0].id)).current_leases == 2
    assert stored_stats(facade, pool) == recomputed_stats(sync, pool)
    assert stored_stats(facade, pool)["total_leases"] == 2
    facade.release_lease(other)
    stored = sync.get_lease(str(other.id))
    assert stored is not None and stored.status == LeaseStatus.RELEASED
    assert sync.get_proxy(str(proxies[0].id)).current_leases == 1
    loop.run_until_complete(facade.target.aclose())


def test_the_async_facade_turns_coroutines_sync(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The facade itself: errors raised on entering or in the block come out unchanged."""

    class Thing:
        async def add(self, a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a + b

        def section(self, fail_enter: bool) -> AbstractAsyncContextManager[int]:
            @asynccontextmanager
            async def cm() -> AsyncIterator[int]:
                if fail_enter:
                    raise KeyError("enter")
                yield 7

            return cm()

    facade = AsyncFacade(Thing(), loop)
    assert facade.add(2, 3) == 5
    with facade.section(False) as value:
        assert value == 7 and not facade.block_cancelled
    with pytest.raises(KeyError):
        with facade.section(True):
            pass
    with pytest.raises(ValueError):
        with facade.section(False):
            raise ValueError
