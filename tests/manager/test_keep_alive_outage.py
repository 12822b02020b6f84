"""Keep-alive when Redis itself goes away: the lease is given up once it must have expired.

Renewals that fail for lack of Redis are retried until the last successful renewal is one
lease duration old; by then the lease has expired on the server, so the holder is told
(``LeaseLostError``) instead of working on with a proxy someone else may now hold.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from uuid import uuid4

import pytest
from pharox import Lease, ProxyPool

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    LeaseLostError,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.keepalive import KeepAliveState
from pharox_redis.server import RedisServer

from ..helpers import make_pool, make_proxy

DURATION = 0.6


def test_keep_alive_state_gives_up_only_after_a_whole_duration() -> None:
    now = [100.0]
    proxy = make_proxy(ProxyPool(name="pool"))
    lease = Lease(proxy_id=proxy.id, consumer_id=uuid4(), expires_at=datetime.now(timezone.utc))
    leased = LeasedProxy(lease, proxy)
    state = KeepAliveState(leased, 30, clock=lambda: now[0])
    assert state.interval == 10
    outage = RedisStorageError("Redis ConnectionError: refused")
    now[0] += 29.9
    assert not state.failed(outage) and not leased.lost
    state.renewed()
    now[0] += 29.9
    assert not state.failed(outage)  # measured from the last renewal, not the first
    now[0] += 0.1
    assert state.failed(outage) and leased.lost
    with pytest.raises(LeaseLostError) as info:
        leased.check()
    assert info.value.__cause__ is outage


@pytest.mark.real_redis
def test_sync_keep_alive_reports_the_loss_when_redis_is_gone() -> None:
    with RedisServer() as server:
        storage = RedisStorage.from_url(server.url, socket_timeout=0.1)
        pool = make_pool(storage)
        storage.save_proxy(make_proxy(pool, max_concurrency=1))
        manager = RedisProxyManager(storage, retries=0)
        started = time.monotonic()
        with pytest.raises(LeaseLostError, match="could not be renewed"):
            with manager.with_proxy(pool.name, duration_seconds=DURATION, keep_alive=True) as held:
                assert held is not None
                server.stop(kill=True)
                while not held.lost and time.monotonic() - started < 10:
                    time.sleep(0.02)
                assert held.lost
                with pytest.raises(LeaseLostError):
                    held.check()
        # Given up no earlier than a whole duration after the last renewal (at acquire).
        assert time.monotonic() - started >= DURATION
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
    assert DURATION <= elapsed < 5
