"""Keep-alive when Redis itself goes away: the lease is given up at its local deadline.

Renewals that fail for lack of Redis are retried while the lease has time left; at its local
deadline (one duration after the last successful renewal was sent, less a margin), just
before the server's, the holder is told (``LeaseLostError``) instead of working on with a
proxy someone else may soon hold.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pharox import ProxyPool

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeaseLostError,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.leased_proxy import local_deadline
from pharox_redis.server import RedisServer

from ..helpers import make_pool, make_proxy

DURATION = 0.6


@pytest.mark.real_redis
def test_sync_keep_alive_reports_the_loss_when_redis_is_gone() -> None:
    with RedisServer() as server:
        storage = RedisStorage.from_url(server.url, socket_timeout=0.1)
        pool = make_pool(storage)
        storage.save_proxy(make_proxy(pool, max_concurrency=1))
        manager = RedisProxyManager(storage, retries=0)
        started = time.monotonic()
        with pytest.raises(LeaseLostError, match="deadline passed"):
            with manager.with_proxy(pool.name, duration_seconds=DURATION, keep_alive=True) as held:
                assert held is not None
                server.stop(kill=True)
                while not held.lost and time.monotonic() - started < 10:
                    time.sleep(0.02)
                assert held.lost
                with pytest.raises(LeaseLostError):
                    held.check()
        # Given up at the local deadline: a duration (less the margin) after the acquire.
        assert time.monotonic() - started >= local_deadline(0.0, DURATION)
        storage.client.close()


@pytest.mark.real_redis
def test_async_keep_alive_cancels_the_block_when_redis_is_gone() -> None:
    async def scenario(server: RedisServer) -> tuple[bool, float]:
        storage = AsyncRedisStorage.from_url(server.url, socket_timeout=0.1)
        pool = ProxyPool(name="pool")
        await storage.save_pool(pool)
        await storage.save_proxy(make_proxy(pool, max_concurrency=1))
        manager = AsyncRedisProxyManager(storage, retries=0)
        finished_block = False
        started = time.monotonic()
        try:
            async with manager.with_proxy(pool.name, duration_seconds=DURATION, keep_alive=True):
                server.stop(kill=True)
                await asyncio.sleep(10)
                finished_block = True
        except LeaseLostError:
            pass
        elapsed = time.monotonic() - started
        await storage.aclose()
        return finished_block, elapsed

    with RedisServer() as server:
        finished_block, elapsed = asyncio.run(scenario(server))
    assert not finished_block  # the block was cancelled, not left to run on
    assert local_deadline(0.0, DURATION) <= elapsed < 5  # given up at the local deadline
