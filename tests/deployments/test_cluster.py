"""Redis Cluster: pools spread over the masters, every call reaches its pool's node.

On a loopback cluster of 3 masters with a replica each (``tests/helpers/topologies.py``):
pools and tenants' registries land on different masters; the audit and ``pharox-redis
verify`` see every master; cleanup reclaims every pool; ``WAIT`` counts the replicas of the
pool's own master; the 0.1.0 registries move to their new slots; the function library is
loaded on each master the first time a call runs there, and reaches its replica by
replication. The contract suite and the manager tests run on the cluster too
(``DEPLOYMENTS`` in ``tests/conftest.py``).

The failover test kills a master while a fleet leases and measures how long leasing in its
pools stopped, and how many proxies were held twice after the promotion, with and without
``wait_replicas``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.keys import KeySchema
from pharox_redis.operations.batch import slot_key
from pharox_redis.scripts import library

from ..helpers import make_pool, make_proxy
from ..helpers.failover import Fleet
from ..helpers.topologies import Cluster

pytestmark = [pytest.mark.real_redis, pytest.mark.cluster]


@pytest.fixture
def cluster_storage(redis_cluster: Cluster, prefix: str) -> Iterator[RedisStorage]:
    storage = RedisStorage.from_url(redis_cluster.url, prefix=prefix)
    yield storage
    storage.client.close()


def masters_holding(cluster: Cluster, keys: list[str]) -> set[int]:
    """Return the ports of the masters that own these keys' slots."""
    return {cluster.master_of(key).port for key in keys}


def test_pools_and_tenants_spread_over_the_masters(
    redis_cluster: Cluster, cluster_storage: RedisStorage
) -> None:
    pools = [make_pool(cluster_storage, f"pool-{n}") for n in range(30)]
    metas = [cluster_storage.context.keys.pool(p.id).meta for p in pools]
    assert len(masters_holding(redis_cluster, metas)) == 3
    registries = [KeySchema(f"tenant{n}").globals.pool_ids for n in range(30)]
    assert len({key_slot(k.encode()) for k in registries}) == 30
    assert len(masters_holding(redis_cluster, registries)) == 3
    manager = RedisProxyManager(cluster_storage)
    for pool in pools:
        cluster_storage.save_proxy(make_proxy(pool, max_concurrency=1))
        leased = manager.acquire(pool.name, duration_seconds=60)
        assert leased is not None and manager.acquire(pool.name) is None
        manager.release_proxy(leased)
        stats = cluster_storage.get_pool_stats(pool.name)
        assert stats is not None and stats.total_leases == 0


def test_a_warm_acquire_touches_only_its_pools_node(
    redis_cluster: Cluster, cluster_storage: RedisStorage
) -> None:
    pool = make_pool(cluster_storage)
    cluster_storage.save_proxy(make_proxy(pool, max_concurrency=1))
    manager = RedisProxyManager(cluster_storage)
    manager.release_proxy(manager.acquire(pool.name, duration_seconds=60))  # type: ignore[arg-type]
    node = redis_cluster.master_of(cluster_storage.context.keys.pool(pool.id).meta)
    batches: list[Any] = []
    cluster_storage.executor.observers.append(batches.append)
    for _ in range(5):
        manager.release_proxy(manager.acquire(pool.name, duration_seconds=60))  # type: ignore[arg-type]
    slots = {key_slot(str(slot_key(c)).encode()) for b in batches for c in b.calls}
    assert len(batches) == 10 and slots == {
        key_slot(cluster_storage.context.keys.pool(pool.id).meta.encode())
    }
    assert redis_cluster.master_of(cluster_storage.context.keys.pool(pool.id).meta) == node


def holds_library(cluster: Cluster, port: int) -> bool:
    with cluster.client(port) as client:
        return bool(client.function_list(library=library().name))


def test_the_library_is_loaded_on_each_master_and_replicated(
    redis_cluster: Cluster, prefix: str
) -> None:
    """After FUNCTION FLUSH on every node, leasing in pools on every master, sync and async,
    loads the library once per master ("Function not found", then MULTI; FUNCTION LOAD;
    FCALL; EXEC on that node), and each replica gets it from its master."""
    for server in redis_cluster.servers:
        with redis_cluster.client(server.port) as client:
            if client.info("replication")["role"] == "master":
                client.function_flush()
            client.config_resetstat()
    storage = RedisStorage.from_url(redis_cluster.url, prefix=prefix)
    astorage = AsyncRedisStorage.from_url(redis_cluster.url, prefix=prefix)
    try:
        pools = [make_pool(storage, f"fn-{n}") for n in range(12)]
        metas = [storage.context.keys.pool(p.id).meta for p in pools]
        assert len(masters_holding(redis_cluster, metas)) == 3
        manager = RedisProxyManager(storage)
        for pool in pools:
            storage.save_proxy(make_proxy(pool, max_concurrency=1))
            leased = manager.acquire(pool.name, duration_seconds=60)
            assert leased is not None
            manager.release_proxy(leased)

        async def lease_all() -> None:
            amanager = AsyncRedisProxyManager(astorage)
            for pool in pools:
                leased = await amanager.acquire(pool.name, duration_seconds=60)
                assert leased is not None
                await amanager.release_proxy(leased)
            await astorage.aclose()

        asyncio.run(lease_all())
        assert storage.executor.library is not None and astorage.executor.library is not None
        assert all(holds_library(redis_cluster, s.port) for s in redis_cluster.servers)
        for server in redis_cluster.servers:
            with redis_cluster.client(server.port) as client:
                stats = client.info("commandstats")
                if client.info("replication")["role"] == "master":
                    assert stats["cmdstat_fcall"]["calls"] > 0
                    assert "cmdstat_evalsha" not in stats
                    # Loaded once by each storage that met "Function not found" there.
                    assert 1 <= stats["cmdstat_function|load"]["calls"] <= 2
    finally:
        storage.client.close()


def test_the_audit_and_verify_see_every_master(
    redis_cluster: Cluster, cluster_storage: RedisStorage
) -> None:
    pools = [make_pool(cluster_storage, f"audited-{n}") for n in range(6)]
    for pool in pools:
        cluster_storage.add_proxies_bulk([make_proxy(pool, n) for n in range(3)])
    assert cluster_storage.audit().clean
    # Damage on two different masters: a lease count, and the keys of an unregistered pool.
    damaged = pools[0]
    keys = cluster_storage.context.keys.pool(damaged.id)
    first = cluster_storage.list_proxies(str(damaged.id))[0]
    cluster_storage.client.hset(keys.counts, str(first.id), 5)
    stray = cluster_storage.context.keys.pool("00000000-0000-4000-8000-000000000001")
    cluster_storage.client.hset(stray.meta, "name", "stray")
    report = cluster_storage.audit()
    kinds = {d.what for d in report.drift}
    assert {"count", "unregistered-pool"} <= kinds, report.drift
    prefix = cluster_storage.context.keys.prefix
    verify = [sys.executable, "-m", "pharox_redis", "verify", "--url", redis_cluster.url]
    done = subprocess.run([*verify, "--prefix", prefix], capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr  # drift found
    repaired = subprocess.run(
        [*verify, "--prefix", prefix, "--repair"], capture_output=True, text=True
    )
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert cluster_storage.audit().clean


def test_cleanup_reclaims_in_every_pool(cluster_storage: RedisStorage) -> None:
    pools = [make_pool(cluster_storage, f"expiring-{n}") for n in range(9)]
    manager = RedisProxyManager(cluster_storage)
    for pool in pools:
        cluster_storage.save_proxy(make_proxy(pool, max_concurrency=1))
        assert manager.acquire(pool.name, duration_seconds=0.2) is not None
    time.sleep(0.3)
    assert cluster_storage.cleanup_expired_leases() == len(pools)
    assert cluster_storage.cleanup_expired_leases() == 0


def test_wait_replicas_waits_on_the_pools_master(redis_cluster: Cluster, prefix: str) -> None:
    storage = RedisStorage.from_url(redis_cluster.url, prefix=prefix, wait_replicas=1)
    manager = RedisProxyManager(storage)
    pools = [make_pool(storage, f"replicated-{n}") for n in range(6)]
    for pool in pools:
        storage.save_proxy(make_proxy(pool, max_concurrency=1))
        leased = manager.acquire(pool.name, duration_seconds=60)
        assert leased is not None
        leases_key = storage.context.keys.pool(pool.id).leases
        master = redis_cluster.master_of(leases_key)
        replica = replica_of(redis_cluster, master.port)
        with redis.Redis(port=replica, socket_timeout=2) as client:
            client.execute_command("READONLY")
            assert client.hexists(leases_key, str(leased.lease.id))  # on its master's replica
        manager.release_proxy(leased)
    storage.client.close()


def replica_of(cluster: Cluster, master_port: int) -> int:
    """Return the port of the replica of a master."""
    with cluster.client(master_port) as client:
        info = client.info("replication")
        return int(info["slave0"]["port"])


def test_the_registries_of_0_1_0_move_to_their_new_slots(
    redis_cluster: Cluster, cluster_storage: RedisStorage
) -> None:
    pool = make_pool(cluster_storage, "old-layout")
    cluster_storage.save_proxy(make_proxy(pool, max_concurrency=1))
    manager = RedisProxyManager(cluster_storage)
    assert manager.acquire(pool.name, consumer_name="old", duration_seconds=60) is not None
    keys = cluster_storage.context.keys
    client = cluster_storage.client
    for new, old in zip(keys.globals, keys.legacy_globals, strict=True):  # as 0.1.0 wrote them
        dump = client.dump(new)
        if dump is not None:
            client.restore(old, 0, dump)
            client.unlink(new)
    cold = RedisStorage.from_url(redis_cluster.url, prefix=keys.prefix)
    assert cold.get_pool_stats(pool.name) is None  # the new names hold nothing yet
    report = cold.audit()
    assert {d.what for d in report.drift} == {"legacy-layout"}
    assert cold.audit(repair=True).repaired
    assert cold.audit().clean and not any(client.exists(k) for k in keys.legacy_globals)
    stats = cold.get_pool_stats(pool.name)
    assert stats is not None and stats.total_leases == 1  # the pool and its lease came along
    cold.client.close()


# ---------------------------------------------------------------------- failover


@pytest.mark.slow
@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait_replicas=1"])
def test_leasing_resumes_by_itself_when_a_master_dies(prefix: str, wait_replicas: int) -> None:
    # With wait_replicas=1 each master has 2 replicas: the promoted one still has one to wait
    # for (with a single replica, leasing in its pools would stop at NotReplicatedError).
    with Cluster(replicas=1 + wait_replicas) as cluster:
        setup = RedisStorage.from_url(cluster.url, prefix=prefix)
        pools = [make_pool(setup, f"fleet-{n}") for n in range(6)]
        for pool in pools:
            setup.add_proxies_bulk([make_proxy(pool, n, max_concurrency=1) for n in range(4)])
        victim = cluster.master_of(setup.context.keys.pool(pools[0].id).meta)
        metas = {p.name: setup.context.keys.pool(p.id).meta for p in pools}
        hit = [name for name, meta in metas.items() if cluster.master_of(meta) == victim]
        fleet = Fleet(
            lambda: RedisStorage.from_url(
                cluster.url, prefix=prefix, wait_replicas=wait_replicas, wait_timeout=0.2
            ),
            pools,
        ).start()
        time.sleep(1.0)
        killed = time.monotonic()
        victim.stop(kill=True)
        time.sleep(8.0)
        report = fleet.stop()
        stopped = max(report.gap(name, killed) for name in hit)
        print(
            f"\n[cluster failover, wait_replicas={wait_replicas}] leases={len(report.leases)} "
            f"leasing stopped {stopped:.2f} s in the {len(hit)} pool(s) of the dead master; "
            f"over-leased proxies={len(report.overleased())}; errors={dict(report.errors)}"
        )
        assert stopped < 6.0  # the replica took over and the clients found it by themselves
        for name in {p.name for p in pools} - set(hit):
            assert report.gap(name, killed) < 2.0  # the other masters went on
        if wait_replicas:
            assert report.overleased() == {}
        setup.client.close()
