"""``wait_replicas``: a lease is handed out only once N replicas have it (``WAIT``).

A private master on a loopback port and a private replica of it (``--replicaof``). With
``wait_replicas=1`` every lease is on the replica when ``acquire`` returns, at the same one
round trip per acquire; asking for more replicas than exist makes the acquire release its
lease again and raise ``NotReplicatedError`` after ``wait_timeout``, leaving nothing held.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from pharox import ProxyManager

from pharox_redis import NotReplicatedError, RedisProxyManager, RedisStorage
from pharox_redis.server import RedisServer

from ..helpers import Recorder, make_pool, make_proxy

pytestmark = pytest.mark.real_redis


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer(tcp=True, extra=("--repl-diskless-sync-delay", "0")) as master:
        with RedisServer(extra=("--replicaof", "127.0.0.1", str(master.port))) as replica:
            client = redis.Redis.from_url(master.url)
            deadline = time.monotonic() + 10
            while client.info("replication").get("slave0", {}).get("state") != "online":
                assert time.monotonic() < deadline, "the replica did not connect"
                time.sleep(0.05)
            client.close()
            yield master, replica


def test_every_lease_is_on_the_replica_when_acquire_returns(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    storage = RedisStorage.from_url(master.url, prefix="wait1", wait_replicas=1, wait_timeout=2)
    pool = make_pool(storage, "replicated")
    storage.add_proxies_bulk([make_proxy(pool, n, max_concurrency=1) for n in range(6)])
    manager = RedisProxyManager(storage)
    manager.acquire_proxy("replicated", duration_seconds=60)  # resolve pool and consumer
    recorder = Recorder(storage)
    on_replica = redis.Redis.from_url(replica.url)
    leases_key = storage.context.keys.pool(pool.id).leases
    for _ in range(3):
        recorder.reset()
        lease = manager.acquire_proxy("replicated", duration_seconds=60)
        assert lease is not None
        assert len(recorder.batches) == 1
        assert [type(c).__name__ for c in recorder.calls][-1] == "Command"
        assert on_replica.hget(leases_key, str(lease.id)) is not None

    stock = ProxyManager(storage)  # create_lease goes through lease.lua: waits the same way
    lease = stock.acquire_proxy("replicated", duration_seconds=60)
    assert lease is not None
    assert on_replica.hget(leases_key, str(lease.id)) is not None
    assert storage.audit().drift == ()
    on_replica.close()
    storage.client.close()


@pytest.mark.parametrize("manager_kind", ["redis", "stock"])
def test_too_few_replicas_releases_the_lease_and_raises(
    pair: tuple[RedisServer, RedisServer], manager_kind: str
) -> None:
    master, _ = pair
    storage = RedisStorage.from_url(
        master.url, prefix=f"wait2{manager_kind}", wait_replicas=2, wait_timeout=0.2
    )
    pool = make_pool(storage, "short")
    storage.save_proxy(make_proxy(pool, 0, max_concurrency=1))
    manager = RedisProxyManager(storage) if manager_kind == "redis" else ProxyManager(storage)
    started = time.monotonic()
    with pytest.raises(NotReplicatedError) as caught:
        manager.acquire_proxy("short", duration_seconds=60)
    assert time.monotonic() - started >= 0.2
    assert (caught.value.acked, caught.value.wanted) == (1, 2)
    lease = storage.get_lease(str(caught.value.lease_id))
    assert lease is not None and lease.released_at is not None
    stats = storage.get_pool_stats("short")
    assert stats is not None and (stats.leased_proxies, stats.available_proxies) == (0, 1)
    assert storage.audit().drift == ()
    storage.client.close()


def test_bad_wait_options_are_refused() -> None:
    client = redis.Redis()  # never connects: the options are refused first
    for options in ({"wait_replicas": -1}, {"wait_replicas": 1.5}, {"wait_timeout": 0}):
        with pytest.raises(ValueError):
            RedisStorage(client, **options)
