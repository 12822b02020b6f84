"""The local deadline: a holder knows its lease is over without asking Redis.

A ``LeasedProxy`` counts its lease from when the acquire (or the last renewal) was sent, less
a margin, so its deadline falls before the server's. Here: the deadline and the keep-alive's
timing as pure logic, and, on both backends, what a holder sees when its lease runs out: an
overrun without keep-alive is reported on leaving, a late release is logged, a lease past
its deadline is not shown active, and a cancellation of the holder is never swallowed.
Partitions, CPU load and blocked event loops are in ``tests/faults/test_lease_safety.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from pharox import Lease, LeaseStatus, ProxyPool

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    LeaseLostError,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.keepalive import Renewals
from pharox_redis.leased_proxy import local_deadline
from pharox_redis.server import RedisServer

from ..helpers import Recorder, make_pool, make_proxy
from ..helpers.faults import wait_for_proxy


def _lease() -> Lease:
    return Lease(proxy_id=uuid4(), consumer_id=uuid4(), expires_at=datetime.now(timezone.utc))


def _leased(deadline: float, clock: Any) -> LeasedProxy:
    return LeasedProxy(_lease(), make_proxy(ProxyPool(name="p")), deadline, clock)


def seed_one(storage: RedisStorage) -> ProxyPool:
    pool = make_pool(storage)
    storage.save_proxy(make_proxy(pool, max_concurrency=1))
    return pool


def test_the_local_deadline_comes_first_and_needs_no_io() -> None:
    assert local_deadline(100.0, 2.0) == pytest.approx(101.98)  # 1% margin
    assert local_deadline(100.0, 0.1) == pytest.approx(100.095)  # at least 5 ms
    now = [0.0]
    leased = _leased(1.0, lambda: now[0])
    assert not leased.lost and leased.remaining == 1.0
    leased.check()
    now[0] = 1.0
    assert leased.lost and leased.remaining == 0.0
    with pytest.raises(LeaseLostError, match="deadline passed"):
        leased.check()
    leased.renewed(0.9, 2.0)  # a renewal answered after the deadline does not bring it back
    assert leased.lost


def test_check_lost_and_remaining_send_nothing(storage: RedisStorage) -> None:
    pool = seed_one(storage)
    leased = RedisProxyManager(storage).acquire(pool.name, duration_seconds=30)
    assert leased is not None
    recorder = Recorder(storage)
    for _ in range(100):
        leased.check()
        assert not leased.lost and 29 < leased.remaining <= 30
    assert recorder.batches == []


def test_renewals_leave_room_for_a_second_attempt() -> None:
    now = [0.0]
    leased = _leased(local_deadline(0.0, 3.0), lambda: now[0])
    renewals = Renewals(leased, 3.0)
    assert renewals.pause() == pytest.approx(1.0 - 0.03)  # a third of the lease
    now[0] = 1.0
    first = renewals.attempt_timeout()
    assert first == pytest.approx((2.97 - 1.0) / 2)  # half of what is left
    renewals.failure = RedisStorageError("Redis TimeoutError")
    now[0] += first
    assert renewals.pause() == pytest.approx(0.1)  # a 30th of the duration
    assert renewals.attempt_timeout() > 0.4  # a second attempt still has time
    now[0] = 2.97 - 0.003
    assert renewals.pause() == pytest.approx(0.003)  # too late to try: wait out the rest
    now[0] = 2.97
    loss = renewals.loss()
    assert "deadline passed: it could not be renewed" in str(loss)
    assert loss.__cause__ is renewals.failure


def test_an_overrun_without_keep_alive_is_reported_on_exit(
    make_storage: Any, make_async_storage: Any, loop: asyncio.AbstractEventLoop
) -> None:
    storage = make_storage()
    pool = seed_one(storage)
    manager = RedisProxyManager(storage)
    other = RedisProxyManager(make_storage())
    with pytest.raises(LeaseLostError):
        with manager.with_proxy(pool.name, duration_seconds=0.3) as got:
            assert got is not None
            time.sleep(0.4)
            taken = other.acquire(pool.name, consumer_name="other", duration_seconds=60)
            assert taken is not None  # the server gave the proxy away
            assert got.lost
    assert other.acquire(pool.name, duration_seconds=60) is None  # the other lease is intact
    assert taken is not None

    async def overrun() -> None:
        manager = AsyncRedisProxyManager(make_async_storage())
        async with manager.with_proxy(pool.name, consumer_name="late", duration_seconds=0.2):
            await asyncio.sleep(0.3)

    other.release_proxy(taken)
    with pytest.raises(LeaseLostError):
        loop.run_until_complete(overrun())


def test_a_late_release_is_reported_by_the_server(
    storage: RedisStorage, caplog: pytest.LogCaptureFixture
) -> None:
    """release_proxy keeps pharox's signature: an overrun is logged and marked on the lease."""
    pool = seed_one(storage)
    manager = RedisProxyManager(storage)
    for reclaimed_first in (False, True):
        lease = manager.acquire_proxy(pool.name, duration_seconds=0.2)
        assert lease is not None
        time.sleep(0.3)
        if reclaimed_first:
            assert storage.cleanup_expired_leases() == 1
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pharox_redis"):
            manager.release_proxy(lease)
        assert "reached its deadline before it was released" in caplog.text
        assert lease.released_at == lease.expires_at  # it ended at its deadline
    leased = manager.acquire(pool.name, duration_seconds=60)
    assert leased is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pharox_redis"):
        manager.release_proxy(leased)
        manager.release_proxy(leased)  # a second release is no overrun
    assert caplog.text == "" and not leased.lost


def test_a_lease_past_its_deadline_is_not_shown_active(storage: RedisStorage) -> None:
    pool = seed_one(storage)
    lease = RedisProxyManager(storage).acquire_proxy(pool.name, duration_seconds=0.2)
    assert lease is not None
    shown = storage.get_lease(str(lease.id))
    assert shown is not None and shown.status is LeaseStatus.ACTIVE
    time.sleep(0.3)  # expired, and nothing has reclaimed it yet
    for shown in (storage.get_lease(str(lease.id)), *storage.list_leases()):
        assert shown is not None and shown.status is LeaseStatus.RELEASED
        assert shown.released_at == shown.expires_at == lease.expires_at
    assert storage.cleanup_expired_leases() == 1  # stored the same way once reclaimed
    stored = storage.get_lease(str(lease.id))
    assert stored is not None and stored.released_at == lease.expires_at


# ---------------------------------------------------------------------- cancellation


@pytest.mark.real_redis
def test_a_cancellation_of_the_holder_is_never_swallowed(
    redis_server: RedisServer, prefix: str
) -> None:
    storage = RedisStorage.from_url(redis_server.url, prefix=prefix)
    pool = seed_one(storage)

    async def hold(entered: asyncio.Event) -> None:
        astorage = AsyncRedisStorage.from_url(redis_server.url, prefix=prefix)
        manager = AsyncRedisProxyManager(astorage)
        try:
            async with manager.with_proxy(pool.name, duration_seconds=0.3, keep_alive=True):
                entered.set()
                await asyncio.sleep(30)
        finally:
            await astorage.aclose()

    async def main() -> bool:
        entered = asyncio.Event()
        task = asyncio.create_task(hold(entered))
        await entered.wait()
        await asyncio.sleep(0.25)  # a renewal or two
        task.cancel()
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())  # the holder's task ended cancelled, not with a result
    assert wait_for_proxy(storage, pool, 0.5) is not None  # released on the way out
    storage.client.close()


def test_keep_alive_renewals_stop_when_the_block_is_left(storage: RedisStorage) -> None:
    pool = seed_one(storage)
    manager = RedisProxyManager(storage)
    # 1 s leases held 1.2 s: renewed at least once, with room for a busy machine.
    with manager.with_proxy(pool.name, duration_seconds=1.0, keep_alive=True) as got:
        assert got is not None
        time.sleep(1.2)
        assert not got.lost
    recorder = Recorder(storage)
    time.sleep(0.5)  # longer than the renewal interval (a third of the lease)
    assert recorder.batches == []  # nothing renews a released lease
    lease = storage.get_lease(str(got.lease.id))
    assert lease is not None and lease.status is LeaseStatus.RELEASED
    assert lease.released_at is not None and lease.released_at < lease.expires_at
    assert timedelta(0) < lease.expires_at - lease.acquired_at
