"""The lean wire of script calls (``wire.py``): a held connection, shared safely.

Script calls go out pre-packed on one connection the executor keeps; a caller that finds it
busy (another thread or task) goes through the pool. These tests hold that to what the
usual path gives: leases never exceed ``max_concurrency`` under threads and tasks, a busy
connection changes nothing, a forked child never reads its parent's replies, a connection
the server drops is opened again, and replies read the same with ``decode_responses`` on.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pharox import ProxyPool

from pharox_redis import AsyncRedisStorage, RedisProxyManager, RedisStorage
from pharox_redis.async_manager import AsyncRedisProxyManager
from pharox_redis.wire import HeldConnection

from ..helpers import make_pool, make_proxy

pytestmark = pytest.mark.real_redis


def held_connection(storage: RedisStorage) -> HeldConnection:
    held = storage.executor.held[id(storage.client)][1]
    assert isinstance(held, HeldConnection)
    return held


def seeded(storage: RedisStorage, size: int = 4) -> str:
    pool = make_pool(storage)
    storage.add_proxies_bulk([make_proxy(pool, n, max_concurrency=1) for n in range(size)])
    return pool.name


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decode_responses"])
def test_script_calls_share_one_held_connection(
    make_storage: Callable[..., RedisStorage], backend: str, decode: bool
) -> None:
    storage = make_storage(decode_responses=decode)
    name = seeded(storage)
    manager = RedisProxyManager(storage)
    for _ in range(20):
        leased = manager.acquire(name, "w", 60)
        assert leased is not None and str(leased.proxy.host).startswith("10.0.")
        manager.renew_lease(leased, 30)
        manager.release_proxy(leased)
    held = held_connection(storage)
    assert held.conn is not None
    stats = storage.get_pool_stats(name)
    assert stats is not None and stats.total_leases == 0


def test_a_busy_held_connection_sends_through_the_pool(storage: RedisStorage) -> None:
    name = seeded(storage)
    manager = RedisProxyManager(storage)
    leased = manager.acquire(name, "w", 60)
    assert leased is not None
    held = held_connection(storage)
    with held.lock:  # as while another thread's call is in flight
        other = manager.acquire(name, "w", 60)
        assert other is not None and other.proxy.id != leased.proxy.id
        manager.release_proxy(other)
    manager.release_proxy(leased)
    stats = storage.get_pool_stats(name)
    assert stats is not None and stats.total_leases == 0


def test_threads_sharing_a_storage_never_overlease(storage: RedisStorage) -> None:
    name = seeded(storage, size=3)
    manager = RedisProxyManager(storage)
    holders: dict[str, int] = {}
    peak: dict[str, int] = {}
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                leased = manager.acquire(name, "w", 60)
                if leased is None:
                    continue
                key = str(leased.lease.proxy_id)
                with guard:
                    holders[key] = holders.get(key, 0) + 1
                    peak[key] = max(peak.get(key, 0), holders[key])
                with guard:
                    holders[key] -= 1
                manager.release_proxy(leased)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert peak and max(peak.values()) == 1
    stats = storage.get_pool_stats(name)
    assert stats is not None and stats.total_leases == 0


def test_a_dropped_held_connection_is_opened_again(storage: RedisStorage, backend: str) -> None:
    if backend == "fakeredis":
        pytest.skip("fakeredis has no CLIENT KILL")
    name = seeded(storage)
    manager = RedisProxyManager(storage, retries=2)
    leased = manager.acquire(name, "w", 60)
    assert leased is not None
    assert held_connection(storage).conn is not None
    killed = storage.client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1  # the held connection among them
    manager.release_proxy(leased)  # sent again after the drop: release is idempotent
    again = manager.acquire(name, "w", 60)
    assert again is not None
    manager.release_proxy(again)
    stats = storage.get_pool_stats(name)
    assert stats is not None and stats.total_leases == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_takes_a_connection_of_its_own(storage: RedisStorage) -> None:
    name = seeded(storage)
    manager = RedisProxyManager(storage)
    leased = manager.acquire(name, "w", 60)  # the parent's held connection is open
    assert leased is not None
    pid = os.fork()
    if pid == 0:  # the child: lease through the same storage object, then leave at once
        code = 1
        try:
            for _ in range(30):
                got = manager.acquire(name, "child", 60)
                assert got is not None and got.proxy.id != leased.proxy.id
                manager.release_proxy(got)
            code = 0
        finally:
            os._exit(code)
    for _ in range(30):  # meanwhile the parent goes on with its own connection
        got = manager.acquire(name, "parent", 60)
        assert got is not None and got.proxy.id != leased.proxy.id
        manager.release_proxy(got)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    manager.release_proxy(leased)
    stats = storage.get_pool_stats(name)
    assert stats is not None and stats.total_leases == 0


def test_tasks_sharing_an_async_storage_never_overlease(
    make_async_storage: Callable[..., AsyncRedisStorage], loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        storage = make_async_storage()
        pool = ProxyPool(name="wire-async")
        await storage.save_pool(pool)
        await storage.add_proxies_bulk([make_proxy(pool, n, max_concurrency=1) for n in range(3)])
        manager = AsyncRedisProxyManager(storage)
        holders: dict[Any, int] = {}
        peak = 0

        async def work() -> None:
            nonlocal peak
            for _ in range(15):
                leased = await manager.acquire(pool.name, "w", 60)
                if leased is None:
                    continue
                key = leased.lease.proxy_id
                holders[key] = holders.get(key, 0) + 1
                peak = max(peak, holders[key])
                await asyncio.sleep(0)
                holders[key] -= 1
                await manager.release_proxy(leased)

        await asyncio.gather(*(work() for _ in range(8)))
        assert peak == 1
        stats = await storage.get_pool_stats(pool.name)
        assert stats is not None and stats.total_leases == 0
        await storage.aclose()

    loop.run_until_complete(scenario())


def test_a_client_bound_to_one_connection_goes_the_usual_way(
    make_storage: Callable[..., RedisStorage], backend: str
) -> None:
    if backend == "fakeredis":
        pytest.skip("a single-connection fakeredis client is not what this is about")
    plain = make_storage()
    pool = plain.client.connection_pool  # type: ignore[union-attr]
    client = redis.Redis(connection_pool=pool, single_connection_client=True)
    storage = RedisStorage(client, prefix=plain.context.keys.prefix)
    name = seeded(storage)
    manager = RedisProxyManager(storage)
    leased = manager.acquire(name, "w", 60)
    assert leased is not None
    manager.release_proxy(leased)
    assert storage.executor.held[id(client)][1] is None
    client.close()
