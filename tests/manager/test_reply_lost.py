"""Lost replies: the server ran the command, the client never heard back.

A :class:`~tests.helpers.relay.Relay` sits between the client and a private redis-server (a
fresh one per test) and, when armed, drops a reply and closes the connection: the reply to
the next FCALL of the script a test names (the request carries its function's name), so a
new connection's handshake never takes the cut. The acquire is idempotent
because its lease id is chosen by the client before anything is sent: whoever re-sends it
(redis-py's ``Retry`` from ``from_url``, or the manager's own ``retries``), the server answers
with the lease it already made, so exactly one lease exists and the audit counts exactly the
leases the caller holds. Without any re-send the caller gets ``RedisStorageError`` and the
orphan lease is reclaimed at expiry. Release is idempotent too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, NamedTuple, Optional

import pytest
import redis
import redis.asyncio
from pharox import LeaseStatus, Proxy, ProxyManager, ProxyPool
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.operations.batch import Batch, ScriptCall
from pharox_redis.scripts import library, sources
from pharox_redis.server import RedisServer

from ..helpers import Recorder, make_pool, make_proxy
from ..helpers.relay import Relay

pytestmark = pytest.mark.real_redis

PREFIX = "lost"
TIMEOUT = 2.0  # socket timeout of the clients that must not time out


class Seeded(NamedTuple):
    pool: ProxyPool
    proxy: Proxy


class View(NamedTuple):
    """What the server holds for the seeded pool."""

    records: int  # lease records (active, or released and retained)
    active: int  # active leases (entries in the pool's deadline index)
    proxy_leases: int  # the proxy's current_leases
    total_leases: int  # pool stats
    leased_proxies: int  # pool stats


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(tcp=True) as srv:
        yield srv


@pytest.fixture
def relay(server: RedisServer) -> Iterator[Relay]:
    with Relay("127.0.0.1", server.port) as r:
        yield r


@pytest.fixture
def direct(server: RedisServer) -> Iterator[RedisStorage]:
    """A storage talking to the server without the relay, to seed and inspect."""
    storage = RedisStorage.from_url(server.url, prefix=PREFIX)
    # Load the library (and the scripts) now: the reply the relay drops must be one of a
    # command that ran, never a "Function not found" (NOSCRIPT) answer.
    storage.client.function_load(library().source.text, replace=True)
    for source in sources().values():
        storage.client.script_load(source.text)
    yield storage
    storage.client.close()


@pytest.fixture
def seeded(direct: RedisStorage) -> Seeded:
    pool = make_pool(direct)
    proxy = make_proxy(pool, max_concurrency=None)  # a second lease would show as a count of 2
    direct.save_proxy(proxy)
    return Seeded(pool, proxy)


def view(direct: RedisStorage, seeded: Seeded) -> View:
    """Read what the server holds; the audit must agree with it and find no drift."""
    keys = direct.context.keys.pool(seeded.pool.id)
    raw_count = direct.client.hget(keys.counts, str(seeded.proxy.id))
    assert raw_count is None or int(raw_count) > 0  # absent at 0, never negative
    stats = direct.get_pool_stats(seeded.pool.name)
    assert stats is not None
    scores = direct.client.zrange(keys.deadlines, 0, -1, withscores=True)
    active = sum(1 for pair in scores if float(pair[1]) % 1 == 0)  # x.5: a released record
    report = direct.audit()
    assert report.drift == () and report.active_leases == active, report
    return View(
        records=direct.client.hlen(keys.leases),
        active=active,
        proxy_leases=direct.get_proxy(str(seeded.proxy.id)).current_leases,
        total_leases=stats.total_leases,
        leased_proxies=stats.leased_proxies,
    )


ONE_LEASE = View(records=1, active=1, proxy_leases=1, total_leases=1, leased_proxies=1)
RELEASED = View(records=1, active=0, proxy_leases=0, total_leases=0, leased_proxies=0)


def cut_replies(relay: Relay, script: str, times: int = 1) -> None:
    """Drop the replies to the next ``times`` calls of ``script`` (FCALL of its function)."""
    # The name as one RESP bulk string: "..._release" must not match "..._release_many".
    relay.cut_replies_to(f"\r\n{library().functions[script]}\r\n".encode(), times)


def warm(storage: RedisStorage, seeded: Seeded) -> None:
    """Cache the pool and consumer names and open the connection, without leasing."""
    assert storage.get_pool_stats(seeded.pool.name) is not None
    storage.ensure_consumer("w")


def no_retry_storage(url: str, opened: list[RedisStorage]) -> RedisStorage:
    """A storage whose redis-py client never re-sends anything."""
    client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=TIMEOUT)
    storage = RedisStorage(client, prefix=PREFIX)
    opened.append(storage)
    return storage


def from_url_storage(url: str, opened: list[RedisStorage]) -> RedisStorage:
    """A storage as ``from_url`` makes it: redis-py re-sends on a lost reply."""
    storage = RedisStorage.from_url(url, prefix=PREFIX, socket_timeout=TIMEOUT)
    opened.append(storage)
    return storage


def lease_ids(batches: list[Batch]) -> list[str]:
    """The lease id each acquire.lua call carried."""
    calls = [c for b in batches for c in b.calls]
    return [str(c.args[6]) for c in calls if isinstance(c, ScriptCall) and c.name == "acquire"]


def lose_an_acquire(
    relay: Relay, seeded: Seeded, opened: list[RedisStorage], duration: float
) -> tuple[RedisProxyManager, RedisStorageError]:
    """Run an acquire whose reply is lost and that nobody re-sends; return what it raised."""
    storage = no_retry_storage(relay.url, opened)
    warm(storage, seeded)
    manager = RedisProxyManager(storage, retries=0)
    cut_replies(relay, "acquire")
    with pytest.raises(RedisStorageError) as info:
        manager.acquire_proxy(seeded.pool.name, "w", duration)
    return manager, info.value


# ---------------------------------------------------------------------- lost acquire


def test_redis_py_retry_resends_a_lost_acquire(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    storage = from_url_storage(relay.url, opened)
    warm(storage, seeded)
    manager = RedisProxyManager(storage, retries=0)  # only redis-py may re-send
    recorder = Recorder(storage)
    before = relay.connections  # the storage's own, the one held for scripts too
    cut_replies(relay, "acquire")
    lease = manager.acquire_proxy(seeded.pool.name, "w", 60)
    assert relay.cuts == 1 and relay.connections == before + 1  # dropped, reconnected, re-sent
    assert len(recorder.batches) == 1  # the manager ran it once: redis-py re-sent it
    assert lease is not None and lease.proxy_id == seeded.proxy.id
    assert view(direct, seeded) == ONE_LEASE
    stored = direct.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.ACTIVE
    assert stored.acquired_at == lease.acquired_at and stored.expires_at == lease.expires_at


def test_manager_retries_resend_lost_replies_with_the_same_lease_id(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    """Two acquire replies lost in a row: the third send (retries=2) gets the one lease."""
    storage = no_retry_storage(relay.url, opened)
    warm(storage, seeded)
    manager = RedisProxyManager(storage)  # retries=2 by default
    recorder = Recorder(storage)
    before = relay.connections  # the storage's own, the one held for scripts too
    cut_replies(relay, "acquire", times=2)
    with manager.with_proxy(seeded.pool.name, "w", 60) as leased:
        assert relay.cuts == 2 and relay.connections == before + 2
        ids = lease_ids(recorder.batches)
        assert len(ids) == 3 and len(set(ids)) == 1  # sent three times, with one lease id
        assert leased is not None and str(leased.lease.id) == ids[0]
        assert leased.proxy.current_leases == 1  # the proxy as the first run leased it
        assert view(direct, seeded) == ONE_LEASE
        cut_replies(relay, "release")  # the release on leaving the block
    assert relay.cuts == 3 and leased.lease.released_at is not None
    assert view(direct, seeded) == RELEASED


def test_lost_acquire_without_retries_raises_and_the_lease_expires(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    started = time.monotonic()
    manager, error = lose_an_acquire(relay, seeded, opened, 0.3)
    assert isinstance(error.__cause__, redis.ConnectionError)
    assert relay.cuts == 1
    # The server made the lease and the error carries its id, so the caller can find it.
    assert view(direct, seeded) == ONE_LEASE
    (orphan,) = direct.list_leases()
    assert orphan.status is LeaseStatus.ACTIVE and orphan.proxy_id == seeded.proxy.id
    assert error.lease_id == orphan.id
    # Left alone, it stays accounted until it expires and cleanup reclaims it.
    time.sleep(max(0.0, started + 0.3 - time.monotonic()))
    reclaimed = direct.cleanup_expired_leases()
    while not reclaimed and time.monotonic() < started + 5:
        time.sleep(0.01)
        reclaimed = direct.cleanup_expired_leases()
    assert reclaimed == 1
    assert view(direct, seeded) == RELEASED
    # The manager works again on a new connection.
    lease = manager.acquire_proxy(seeded.pool.name, "w", 60)
    # Two before the cut (the pool's and the one held for script calls), one reconnect.
    assert lease is not None and relay.connections == 3
    manager.release_proxy(lease)
    assert view(direct, seeded).proxy_leases == 0


def test_a_lease_whose_acquire_failed_can_be_found_and_released(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    manager, error = lose_an_acquire(relay, seeded, opened, 60)
    assert error.lease_id is not None
    orphan = manager.storage.get_lease(str(error.lease_id))
    assert orphan is not None and orphan.status is LeaseStatus.ACTIVE
    manager.release_proxy(orphan)
    assert view(direct, seeded) == RELEASED


# ---------------------------------------------------------------------- lost release


@pytest.mark.parametrize(
    ("client", "retries"),
    [("from_url", 0), ("no_retry", 2), ("no_retry", 0)],
    ids=["redis-py-resends", "manager-resends", "nobody-resends"],
)
def test_lost_release_is_idempotent(
    relay: Relay,
    direct: RedisStorage,
    seeded: Seeded,
    opened: list[RedisStorage],
    client: str,
    retries: int,
) -> None:
    make = from_url_storage if client == "from_url" else no_retry_storage
    storage = make(relay.url, opened)
    manager = RedisProxyManager(storage, retries=retries)
    released: list[Any] = []
    manager.register_release_callback(released.append)
    lease = manager.acquire_proxy(seeded.pool.name, "w", 60)
    assert lease is not None and view(direct, seeded) == ONE_LEASE
    before = relay.connections  # the storage's own, the one held for scripts too
    cut_replies(relay, "release")
    if client == "no_retry" and retries == 0:
        with pytest.raises(RedisStorageError):
            manager.release_proxy(lease)
        assert not released
    else:
        manager.release_proxy(lease)  # the server ran release.lua twice
        assert lease.released_at is not None
        (payload,) = released
        assert payload.pool_stats is not None and payload.pool_stats.total_leases == 0
    assert relay.cuts == 1
    for _ in range(2):  # released for good: no count below zero, whatever is sent again
        assert view(direct, seeded) == RELEASED
        stored = direct.get_lease(str(lease.id))
        assert stored is not None and stored.status is LeaseStatus.RELEASED
        manager.release_proxy(lease)
    assert relay.connections == before + 1  # one reconnect, whoever re-sent


# ---------------------------------------------------------------------- stock ProxyManager


def test_stock_manager_lost_replies_leave_one_lease_and_no_orphan(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    """pharox's ProxyManager on a ``from_url`` storage: its create_lease and release lose
    their replies; redis-py re-sends each, and the caller holds the one lease made."""
    storage = from_url_storage(relay.url, opened)
    warm(storage, seeded)
    stock = ProxyManager(storage)
    before = relay.connections  # the storage's own, the one held for scripts too
    cut_replies(relay, "lease")  # create_lease: lease.lua
    cut_replies(relay, "release")
    lease = stock.acquire_proxy(seeded.pool.name, "w", 60)
    assert lease is not None and relay.cuts == 1
    assert view(direct, seeded) == ONE_LEASE
    (stored,) = direct.list_leases()
    assert stored.id == lease.id and stored.status is LeaseStatus.ACTIVE
    assert (stored.acquired_at, stored.expires_at) == (lease.acquired_at, lease.expires_at)
    stock.release_proxy(lease)
    assert lease.released_at is not None
    # Two cuts, two reconnects, and two connections: script calls go on one of their own.
    assert (relay.cuts, relay.connections - before) == (2, 2)
    (stored,) = direct.list_leases()
    assert stored.id == lease.id and stored.status is LeaseStatus.RELEASED
    assert view(direct, seeded) == RELEASED


# ---------------------------------------------------------------------- asyncio


async def _async_lost_replies(
    storage: AsyncRedisStorage,
    relay: Relay,
    seeded: Seeded,
    retries: Optional[int],
    acquire_cuts: int = 1,
    release_cut: bool = False,
) -> tuple[Optional[LeasedProxy], list[Batch]]:
    """Acquire (and release) with the async manager while the relay drops replies."""
    try:
        assert await storage.get_pool_stats(seeded.pool.name) is not None
        await storage.ensure_consumer("w")
        manager = (
            AsyncRedisProxyManager(storage)
            if retries is None
            else AsyncRedisProxyManager(storage, retries=retries)
        )
        recorder = Recorder(storage)
        cut_replies(relay, "acquire", acquire_cuts)
        leased = await manager.acquire(seeded.pool.name, "w", 60)
        if release_cut:
            assert leased is not None
            cut_replies(relay, "release")
            await manager.release_proxy(leased)
            assert leased.lease.released_at is not None
        return leased, recorder.batches
    finally:
        await storage.aclose()


def no_retry_async_storage(url: str) -> AsyncRedisStorage:
    """An async storage whose client never re-sends (redis-py retries off)."""
    client = redis.asyncio.Redis.from_url(
        url, retry=AsyncRetry(NoBackoff(), 0), socket_timeout=TIMEOUT
    )
    return AsyncRedisStorage(client, prefix=PREFIX)


def test_async_from_url_retries_a_lost_reply_like_the_sync_one(
    relay: Relay, direct: RedisStorage, seeded: Seeded
) -> None:
    """``AsyncRedisStorage.from_url`` promises the same bounded redis-py retry as the sync one.

    With the manager's own retries off, the sync storage from ``from_url`` survives a lost
    reply (test_redis_py_retry_resends_a_lost_acquire); so must the async one.
    """
    storage = AsyncRedisStorage.from_url(relay.url, prefix=PREFIX, socket_timeout=TIMEOUT)
    assert isinstance(storage.client, redis.asyncio.Redis)
    retry = storage.client.get_retry()
    try:
        leased, batches = asyncio.run(_async_lost_replies(storage, relay, seeded, 0))
    except RedisStorageError as exc:
        pytest.fail(f"nothing re-sent the lost reply ({exc}); the client's retry is {retry!r}")
    # The storage's two (the pool's, the one held for script calls) and one reconnect.
    assert relay.cuts == 1 and relay.connections == 3
    assert leased is not None and leased.lease.proxy_id == seeded.proxy.id
    assert len(batches) == 1 and len(set(lease_ids(batches))) == 1
    assert view(direct, seeded) == ONE_LEASE


def test_async_manager_retries_resend_lost_replies(
    relay: Relay, direct: RedisStorage, seeded: Seeded
) -> None:
    storage = no_retry_async_storage(relay.url)
    leased, batches = asyncio.run(
        _async_lost_replies(storage, relay, seeded, None, acquire_cuts=2, release_cut=True)
    )
    ids = lease_ids(batches)
    assert len(ids) == 3 and len(set(ids)) == 1
    assert leased is not None and relay.cuts == 3
    assert view(direct, seeded) == RELEASED


def test_async_lost_acquire_without_retries_raises(
    relay: Relay, direct: RedisStorage, seeded: Seeded
) -> None:
    storage = no_retry_async_storage(relay.url)
    with pytest.raises(RedisStorageError):
        asyncio.run(_async_lost_replies(storage, relay, seeded, 0))
    assert relay.cuts == 1 and view(direct, seeded) == ONE_LEASE
