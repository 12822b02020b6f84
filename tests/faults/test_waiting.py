"""Waiting for a proxy (``acquire(..., wait=)``) under contention, crashes and restarts.

On private redis-servers: a fleet of eight ``spawn`` processes (sync and async managers) on
four proxies of ``max_concurrency=1``, each looping acquire(wait)-hold-release, never gets
None before its deadline, never overlaps another holder (the stored lease records, on the
server's clock) and shares fairly; waiters are served in the order they joined; waiters
killed with SIGKILL strand no proxy for longer than the pickup deadline; a Redis restart
wakes the waiters with a lease, None or an error by their deadline, never later.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from typing import Any, Optional

import pytest
from pharox import LeaseStatus, PoolNotFoundError

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.operations.acquire import PICKUP_SECONDS
from pharox_redis.server import RedisServer
from pharox_redis.wait_flows import CHECK_SECONDS

from ..helpers import seed_pool
from ..helpers.faults import RETENTION, connect, peak_per_proxy
from ..helpers.fleet import Fleet
from ..helpers.waiters import jain_index, wait_worker, waiting_victim

pytestmark = pytest.mark.real_redis

FLEET = 8
PROXIES = 4
FLEET_SECONDS = 3.0
WAIT = 5.0
HOLD = 0.02


def queue_length(storage: RedisStorage, pool_id: Any) -> int:
    return int(storage.client.zcard(storage.context.keys.pool(pool_id).waiters))


def until_queued(storage: RedisStorage, pool_id: Any, length: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while queue_length(storage, pool_id) < length:
        assert time.monotonic() < deadline, f"the queue never held {length} waiters"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_contended_fleet_waits_without_misses_overlap_or_favourites(
    opened: list[RedisStorage],
) -> None:
    """8 processes (4 sync, 4 async) on 4 proxies of max_concurrency=1, hold 20 ms each."""
    with RedisServer() as server, Fleet(FLEET) as fleet:
        storage = connect(server.url, opened, prefix="fleet")
        pool = seed_pool(storage, PROXIES, max_concurrency=1)
        for i in range(FLEET):
            kind = "sync" if i % 2 == 0 else "async"
            fleet.spawn(
                f"{kind}-{i}",
                wait_worker,
                kind,
                i,
                server.url,
                "fleet",
                pool.name,
                FLEET_SECONDS,
                wait=WAIT,
                hold=HOLD,
                retention=RETENTION,
            )
        fleet.start()
        reports = fleet.collect(FLEET, timeout=FLEET_SECONDS + WAIT + 30)
        assert {r["kind"] for r in reports} == {"sync", "async"}
        for report in reports:
            assert report["errors"] == {}, report["messages"]
            assert report["none"] == 0, report  # nobody waited its whole 5 s
            assert all(waited < WAIT for _, _, waited in report["leases"])
        counts = [len(r["leases"]) for r in reports]
        assert min(counts) > 0
        print(f"\nleases per worker {counts}, Jain's index {jain_index(counts):.3f}")
        assert jain_index(counts) >= 0.95
        leases = storage.list_leases()
        granted = {lease_id for r in reports for lease_id, _, _ in r["leases"]}
        assert granted <= {str(lease.id) for lease in leases}
        assert max(peak_per_proxy(leases).values()) == 1  # no two holders at once
        assert queue_length(storage, pool.id) == 0
        assert storage.audit().drift == ()


def test_waiters_are_served_in_the_order_they_joined(opened: list[RedisStorage]) -> None:
    """Five waiters join one after the other on a held proxy; each holds it 30 ms in turn."""
    with RedisServer() as server:
        storage = connect(server.url, opened, prefix="fifo")
        pool = seed_pool(storage, 1, max_concurrency=1)
        holder = RedisProxyManager(storage)
        held = holder.acquire(pool.name, "holder", 60)
        assert held is not None
        served: list[int] = []
        lock = threading.Lock()

        def waiter(index: int, manager: RedisProxyManager) -> None:
            leased = manager.acquire(pool.name, f"w{index}", 60, wait=20)
            assert leased is not None
            with lock:
                served.append(index)
            time.sleep(0.03)
            manager.release_proxy(leased)

        threads = []
        for index in range(5):
            manager = RedisProxyManager(connect(server.url, opened, prefix="fifo"))
            thread = threading.Thread(target=waiter, args=(index, manager))
            thread.start()
            threads.append(thread)
            until_queued(storage, pool.id, index + 1)
        holder.release_proxy(held)
        for thread in threads:
            thread.join(30)
        assert served == [0, 1, 2, 3, 4]
        assert storage.audit().drift == ()


@pytest.mark.slow
def test_killed_waiters_strand_no_proxy(opened: list[RedisStorage]) -> None:
    """Two waiters are killed at the head of the queue; the proxies handed to them come back.

    The hand-off leases a freed proxy to the dead waiter with a pickup deadline; nobody
    picks it up, so it expires and the live waiters' own looks reclaim it and hand it on.
    """
    with RedisServer() as server, Fleet(2) as fleet:
        storage = connect(server.url, opened, prefix="killw")
        pool = seed_pool(storage, PROXIES, max_concurrency=1)
        holder = RedisProxyManager(storage)
        held = [holder.acquire(pool.name, "holder", 60) for _ in range(PROXIES)]
        assert all(x is not None for x in held)
        victims = [
            fleet.spawn(f"victim-{i}", waiting_victim, i, server.url, "killw", pool.name)
            for i in range(2)
        ]
        fleet.start()
        until_queued(storage, pool.id, 2)
        for proc in victims:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
        fleet.join(victims)

        got: list[Optional[LeasedProxy]] = [None] * PROXIES
        errors: list[BaseException] = []

        def survivor(index: int) -> None:
            manager = RedisProxyManager(connect(server.url, opened, prefix="killw"))
            try:
                got[index] = manager.acquire(pool.name, f"s{index}", 60, wait=20)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=survivor, args=(i,)) for i in range(PROXIES)]
        for index, thread in enumerate(threads):
            thread.start()
            until_queued(storage, pool.id, 2 + index + 1)
        released_at = time.monotonic()
        for lease in held:
            assert lease is not None
            holder.release_proxy(lease)
        for thread in threads:
            thread.join(30)
        waited = time.monotonic() - released_at
        assert errors == []
        assert all(x is not None for x in got)  # every proxy reached a live waiter
        assert len({x.proxy.id for x in got if x is not None}) == PROXIES
        assert waited < PICKUP_SECONDS + CHECK_SECONDS + 1.5
        assert queue_length(storage, pool.id) == 0
        assert storage.audit().drift == ()


@pytest.mark.slow
def test_a_redis_restart_wakes_the_waiters_by_their_deadline(opened: list[RedisStorage]) -> None:
    """SIGKILL Redis (AOF) while two waiters block; each ends by its deadline, none hangs."""
    wait = 4.0
    with RedisServer(tcp=True, appendonly=True) as server:
        storage = connect(server.url, opened, prefix="restartw")
        pool = seed_pool(storage, 1, max_concurrency=1)
        holder = RedisProxyManager(storage)
        held = holder.acquire(pool.name, "holder", 60)
        assert held is not None
        outcomes: dict[int, Any] = {}
        ended: dict[int, float] = {}

        def waiter(index: int) -> None:
            manager = RedisProxyManager(connect(server.url, opened, prefix="restartw"))
            started = time.monotonic()
            try:
                outcomes[index] = manager.acquire(pool.name, f"w{index}", 60, wait=wait)
            except RedisStorageError as exc:
                outcomes[index] = exc
            ended[index] = time.monotonic() - started

        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(2)]
        for index, thread in enumerate(threads):
            thread.start()
            until_queued(storage, pool.id, index + 1)
        server.restart(kill=True)
        holder.release_proxy(held)  # the holder's client reconnects; the slot is handed
        for thread in threads:
            thread.join(wait + 10)
        assert sorted(outcomes) == [0, 1]
        kinds = Counter(type(x).__name__ for x in outcomes.values())
        print(f"\nafter the restart: {dict(kinds)}, ended after {ended}")
        assert kinds["LeasedProxy"] == 1  # the slot reached the oldest waiter
        assert max(ended.values()) < wait + 1.5  # nobody blocked past its deadline
        assert storage.audit().drift == ()


def test_a_restart_that_lost_the_pool_fails_the_waiters_at_once(
    opened: list[RedisStorage],
) -> None:
    """Without persistence the pool is gone after a restart: the waiter says so, in time."""
    wait = 10.0
    with RedisServer(tcp=True) as server:
        storage = connect(server.url, opened, prefix="lostw")
        pool = seed_pool(storage, 1, max_concurrency=1)
        assert RedisProxyManager(storage).acquire(pool.name, "holder", 60) is not None
        outcome: list[Any] = []

        def waiter() -> None:
            manager = RedisProxyManager(connect(server.url, opened, prefix="lostw"))
            started = time.monotonic()
            try:
                outcome.append(manager.acquire(pool.name, "w", 60, wait=wait))
            except Exception as exc:
                outcome.append(exc)
            outcome.append(time.monotonic() - started)

        thread = threading.Thread(target=waiter)
        thread.start()
        until_queued(storage, pool.id, 1)
        server.restart(kill=True)
        thread.join(wait + 10)
        error, took = outcome
        assert isinstance(error, PoolNotFoundError), error
        assert took < CHECK_SECONDS + 1.5  # at its next look, not at its deadline


def test_a_cancelled_async_waiter_gets_only_a_pickup_deadline(opened: list[RedisStorage]) -> None:
    """An asyncio wait cancelled (``wait_for``) closes its pub/sub connection at once.

    Its queue entry stays until its deadline, so the next release hands it the proxy, but
    nobody listens any more: the lease runs only to the pickup deadline, then comes back.
    """
    with RedisServer() as server:
        storage = connect(server.url, opened, prefix="cancelw")
        pool = seed_pool(storage, 1, max_concurrency=1)
        holder = RedisProxyManager(storage)
        held = holder.acquire(pool.name, "holder", 60)
        assert held is not None

        async def cancelled() -> list[Any]:
            async_storage = AsyncRedisStorage.from_url(server.url, prefix="cancelw")
            manager = AsyncRedisProxyManager(async_storage)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(manager.acquire(pool.name, "gone", 60, wait=30), 0.5)
            await asyncio.sleep(0.2)  # the abandoned connection's close runs
            channels = await async_storage.client.pubsub_channels("cancelw:handoff:*")
            await async_storage.aclose()
            return list(channels)

        assert asyncio.run(cancelled()) == []
        assert queue_length(storage, pool.id) == 1  # still queued: it never left
        holder.release_proxy(held)
        (handed,) = [x for x in storage.list_leases() if x.status is LeaseStatus.ACTIVE]
        assert (handed.expires_at - handed.acquired_at).total_seconds() <= PICKUP_SECONDS
        assert queue_length(storage, pool.id) == 0
        assert storage.audit().drift == ()
