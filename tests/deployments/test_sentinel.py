"""Sentinel: a master that fails over to its replica, and what ``wait_replicas`` saves.

On a loopback master with replicas and 3 sentinels (``tests/helpers/topologies.py``):
``from_url("redis+sentinel://...")`` finds the master and, after a failover, the new one;
the promoted replica already holds the function library (it came by replication). The
failover test kills the master while
a fleet leases; the first replica replicates through a relay stalled a second before, so it
lacks that second of acknowledged leases, as a lagging replica would. Without
``wait_replicas`` the promoted replica may hand out proxies whose leases it never received;
with ``wait_replicas=1`` a lease is acknowledged only once a replica has it, and none is.
The contract suite and the manager tests run behind Sentinel too (``DEPLOYMENTS``).
"""

from __future__ import annotations

import time

import pytest
import redis

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.scripts import library

from ..helpers import make_pool, make_proxy
from ..helpers.failover import Fleet
from ..helpers.topologies import SentinelGroup

pytestmark = [pytest.mark.real_redis, pytest.mark.sentinel]


def test_from_url_finds_the_master_through_the_sentinels(
    sentinel_group: SentinelGroup, prefix: str
) -> None:
    storage = RedisStorage.from_url(sentinel_group.url, prefix=prefix)
    pool = make_pool(storage)
    storage.save_proxy(make_proxy(pool, max_concurrency=1))
    manager = RedisProxyManager(storage)
    leased = manager.acquire(pool.name, duration_seconds=60)
    assert leased is not None
    address = storage.client.connection_pool.get_master_address()  # type: ignore[union-attr]
    assert int(address[1]) == sentinel_group.master_port()
    manager.release_proxy(leased)
    storage.client.close()


@pytest.mark.slow
@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait_replicas=1"])
def test_a_failover_loses_no_acknowledged_lease_with_wait_replicas(
    prefix: str, wait_replicas: int
) -> None:
    # Two replicas: the lagging one, and one that keeps up (so that with wait_replicas the
    # new master still has a replica to wait for).
    with SentinelGroup(replicas=2, lagging=True) as group:
        setup = RedisStorage.from_url(group.url, prefix=prefix)
        pools = [make_pool(setup, f"fleet-{n}") for n in range(3)]
        for pool in pools:
            setup.add_proxies_bulk([make_proxy(pool, n, max_concurrency=1) for n in range(4)])
        fleet = Fleet(
            lambda: RedisStorage.from_url(
                group.url, prefix=prefix, wait_replicas=wait_replicas, wait_timeout=0.2
            ),
            pools,
        ).start()
        time.sleep(1.0)
        group.lag()  # the first replica falls behind...
        if not wait_replicas:
            group.replicas[1].stop(kill=True)  # ...and is the only one left to promote
        time.sleep(1.0)
        killed = time.monotonic()
        group.master.stop(kill=True)
        time.sleep(10.0)
        report = fleet.stop()
        stopped = max(report.gap(pool.name, killed) for pool in pools)
        print(
            f"\n[sentinel failover, wait_replicas={wait_replicas}] leases={len(report.leases)} "
            f"leasing stopped {stopped:.2f} s; over-leased proxies={len(report.overleased())} "
            f"(peaks {report.overleased()}); errors={dict(report.errors)}"
        )
        assert stopped < 8.0  # Sentinel promoted a replica and the clients found it
        if wait_replicas:
            assert report.overleased() == {}
        with redis.Redis(port=group.master_port()) as promoted:  # it came by replication
            assert promoted.function_list(library=library().name)
        setup.client.close()
