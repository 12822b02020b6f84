"""pharox's own contract suite for storage adapters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pharox import Proxy, ProxyPool
from pharox.storage import IStorage
from pharox.tests.adapters import StorageContractFixtures, storage_contract_suite

from pharox_redis import RedisStorage

from ..conftest import DEPLOYMENTS

# The contract suite runs on every deployment: also on a Redis Cluster and behind Sentinel.
on_every_deployment = pytest.mark.parametrize("backend", DEPLOYMENTS, indirect=True)


def _seed_pool(storage: IStorage, pool: ProxyPool) -> ProxyPool:
    storage.save_pool(pool)
    return storage.get_pool(str(pool.id))


def _seed_proxy(storage: IStorage, proxy: Proxy) -> Proxy:
    storage.save_proxy(proxy)
    return storage.get_proxy(str(proxy.id))


@on_every_deployment
def test_pharox_contract_suite(make_storage: Callable[..., RedisStorage]) -> None:
    storage_contract_suite(
        StorageContractFixtures(
            make_storage=make_storage,
            seed_pool=_seed_pool,
            seed_proxy=_seed_proxy,
        )
    )


@on_every_deployment
def test_pharox_contract_suite_decoded_responses(
    make_storage: Callable[..., RedisStorage],
) -> None:
    storage_contract_suite(
        StorageContractFixtures(
            make_storage=lambda: make_storage(decode_responses=True),
            seed_pool=_seed_pool,
            seed_proxy=_seed_proxy,
        )
    )
