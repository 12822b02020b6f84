"""The leasing clients with ``wait=``: a request waits in the pool's queue for a proxy.

A real pproxy and a real redis-server: the only proxy (``max_concurrency=1``) is held by
another worker, which gives it back from a timer thread; the request sent meanwhile waits
for it (``acquire(..., wait=)``) and goes through it, where without ``wait`` it fails at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis.asyncio
from pharox import ProxyUnavailableError

from pharox_redis import AsyncRedisProxyManager, AsyncRedisStorage, RedisProxyManager, RedisStorage
from pharox_redis.http import AsyncLeasingClient, LeasingClient
from pharox_redis.leased_proxy import LeasedProxy
from pharox_redis.server import RedisServer

from .conftest import seed_pool
from .servers import Origin, ProxyServer

pytestmark = [pytest.mark.real_redis, pytest.mark.timeout(90)]
LATE = 1.5  # a hand-off reaches its waiter well within this


@contextmanager
def given_back_after(seconds: float, storage: RedisStorage, leased: LeasedProxy) -> Iterator[None]:
    """Release ``leased`` (another worker's lease) after ``seconds`` on a timer thread."""
    timer = threading.Timer(seconds, RedisProxyManager(storage).release_proxy, (leased,))
    timer.start()
    try:
        yield
    finally:
        timer.join(10)


def held_by_another(storage: RedisStorage, pool_name: str) -> LeasedProxy:
    leased = RedisProxyManager(storage).acquire(pool_name, "holder", 60)
    assert leased is not None
    return leased


def test_a_request_and_a_session_wait_for_a_released_proxy(
    http_storage: RedisStorage, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    live = proxy_servers["open"]
    pool = seed_pool(http_storage, [live.proxy(pool_id=uuid.uuid4(), max_concurrency=1)])
    manager = RedisProxyManager(http_storage)
    with LeasingClient(manager, pool.name) as impatient:
        held = held_by_another(http_storage, pool.name)
        with pytest.raises(ProxyUnavailableError):
            impatient.get(origin.url())  # no wait: fails at once
    with LeasingClient(manager, pool.name, wait=10) as client:
        started = time.monotonic()
        with given_back_after(0.2, http_storage, held):
            assert client.get(origin.url()).status == 200
        assert time.monotonic() - started < 0.2 + LATE
        held = held_by_another(http_storage, pool.name)
        with given_back_after(0.2, http_storage, held):
            with client.session() as session:  # with_proxy(..., wait=)
                assert session.get(origin.url()).status == 200
    assert origin.sources() == [live.host] * 2
    found = http_storage.get_outcome_stats(pool.name)
    assert found is not None and found.stats.total_leases == 0


def test_the_async_client_waits_for_a_released_proxy(
    http_storage: RedisStorage,
    redis_server: RedisServer,
    proxy_servers: dict[str, ProxyServer],
    origin: Origin,
) -> None:
    live = proxy_servers["alice"]
    pool = seed_pool(http_storage, [live.proxy(pool_id=uuid.uuid4(), max_concurrency=1)])
    held = held_by_another(http_storage, pool.name)

    async def run() -> int:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        storage = AsyncRedisStorage(client, prefix=http_storage.context.keys.prefix)
        try:
            manager = AsyncRedisProxyManager(storage)
            async with AsyncLeasingClient(manager, pool.name, wait=10) as leasing:
                return (await leasing.get(origin.url())).status_code
        finally:
            await client.aclose()

    started = time.monotonic()
    with given_back_after(0.2, http_storage, held):
        assert asyncio.run(run()) == 200
    assert time.monotonic() - started < 0.2 + LATE
    assert origin.sources() == [live.host]
