"""``acquire(..., wait=)``: a proxy freed while a caller waits is handed to it, in order.

Every test runs with the sync and the async manager on every deployment (fakeredis, a
private redis-server and valkey-server, a Redis Cluster, a Sentinel-managed master). The
waiter blocks on the test's thread while another storage (``other``, a worker of its own)
frees proxies from a timer thread, so nothing here needs the waiter to run concurrently with
the test body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import pytest
from pharox import Lease, PoolNotFoundError, ProxyFilters, ProxyStatus, RetryConfig

from pharox_redis import MissReason, RedisProxyManager, RedisStorage, codec, flows
from pharox_redis.keys import KeySchema
from pharox_redis.operations import acquire as acquiring
from pharox_redis.operations import waiting
from pharox_redis.operations.acquire import Queued, Waiter
from pharox_redis.operations.batch import Command, Op, one
from pharox_redis.operations.context import Context

from ..helpers import Recorder
from ..helpers.managers import AsyncManager, run_op, seed
from ..helpers.round_trips import script_names

Manager = RedisProxyManager | AsyncManager
LATE = 1.5  # a hand-off reaches its waiter well within this (no polling: it is woken)


@contextmanager
def later(seconds: float, action: Callable[[], Any]) -> Iterator[None]:
    """Run ``action`` on a timer thread after ``seconds`` (joined when the block ends)."""
    timer = threading.Timer(seconds, action)
    timer.start()
    try:
        yield
    finally:
        timer.join(10)


def hold_all(other: RedisStorage, pool_name: str, count: int) -> list[Lease]:
    """Lease every proxy of the pool as another worker."""
    holder = RedisProxyManager(other)
    leases = [holder.acquire_proxy(pool_name, "holder", 60) for _ in range(count)]
    assert all(lease is not None for lease in leases)
    return [lease for lease in leases if lease is not None]


def storage_of(manager: Manager) -> Any:
    """The manager's own storage (the async one's, not its facade)."""
    return manager.storage.target if isinstance(manager, AsyncManager) else manager.storage


def queue_length(manager: Manager, pool_id: Any) -> int:
    """How many waiters the pool's queue holds."""
    keys = storage_of(manager).context.keys.pool(pool_id)
    return int(run_op(manager, _zcard(keys.waiters)))


def _zcard(key: str) -> Op[int]:
    (n,) = yield one(Command(("ZCARD", key)))
    return int(n)


def test_a_free_proxy_is_one_round_trip_as_without_wait(manager: Manager) -> None:
    pool, _ = seed(manager, 2, max_concurrency=1)
    assert manager.acquire(pool.name, "w", 60) is not None  # warm: names cached, covered
    recorder = Recorder(storage_of(manager))
    leased = manager.acquire(pool.name, "w", 60, wait=5)
    assert leased is not None
    assert script_names(recorder.batches) == [["acquire"]]


def test_wait_times_out_with_none_and_leaves_the_queue(
    manager: Manager, other: RedisStorage
) -> None:
    pool, _ = seed(manager, 1, max_concurrency=1)
    hold_all(other, pool.name, 1)
    started = time.monotonic()
    assert manager.acquire(pool.name, "w", 60, wait=0.4) is None
    assert time.monotonic() - started >= 0.4
    assert queue_length(manager, pool.id) == 0
    assert other.audit(pool.name).drift == ()


def test_a_released_proxy_is_handed_to_the_waiter(manager: Manager, other: RedisStorage) -> None:
    pool, _ = seed(manager, 1, max_concurrency=1)
    (held,) = hold_all(other, pool.name, 1)
    started = time.monotonic()
    with later(0.1, lambda: other.release_lease(held)):
        leased = manager.acquire(pool.name, "w", 60, wait=10)
    waited = time.monotonic() - started
    assert leased is not None and leased.proxy.id == held.proxy_id
    assert waited < 0.1 + LATE
    # The handed lease was picked up: it runs its full duration from then.
    assert (leased.lease.expires_at - leased.lease.acquired_at).total_seconds() >= 59
    assert queue_length(manager, pool.id) == 0
    assert other.audit(pool.name).drift == ()


def test_an_expired_lease_is_reclaimed_for_the_waiter(
    manager: Manager, other: RedisStorage
) -> None:
    pool, _ = seed(manager, 1, max_concurrency=1)
    holder = RedisProxyManager(other)
    held = holder.acquire_proxy(pool.name, "holder", 0.5)  # never released: it expires
    assert held is not None
    started = time.monotonic()
    leased = manager.acquire(pool.name, "w", 60, wait=10)
    assert leased is not None and leased.proxy.id == held.proxy_id
    assert time.monotonic() - started < 0.5 + LATE  # the waiter looked at the lease's deadline
    assert other.audit(pool.name).drift == ()


def test_a_proxy_becoming_active_is_handed_to_the_waiter(
    manager: Manager, other: RedisStorage
) -> None:
    pool, proxies = seed(manager, 1, max_concurrency=1, status=ProxyStatus.INACTIVE)
    revived = proxies[0].model_copy(update={"status": ProxyStatus.ACTIVE})
    started = time.monotonic()
    with later(0.1, lambda: other.save_proxy(revived)):
        leased = manager.acquire(pool.name, "w", 60, wait=10)
    assert leased is not None and leased.proxy.id == revived.id
    assert time.monotonic() - started < 0.1 + LATE
    assert other.audit(pool.name).drift == ()


def test_a_reimport_by_address_hands_the_stored_proxy_to_the_waiter(
    manager: Manager, other: RedisStorage
) -> None:
    # Issue 16's identity and issue 14's hand-off together: the list is imported again with
    # fresh ids and the proxies ACTIVE; the stored proxy (its id kept) goes to the waiter.
    pool, proxies = seed(manager, 1, max_concurrency=1, status=ProxyStatus.INACTIVE)
    again = proxies[0].model_copy(update={"id": uuid4(), "status": ProxyStatus.ACTIVE})
    with later(0.1, lambda: other.save_proxies([again])):
        leased = manager.acquire(pool.name, "w", 60, wait=10)
    assert leased is not None and leased.proxy.id == proxies[0].id
    assert len(other.list_proxies(str(pool.id))) == 1
    assert other.audit(pool.name).drift == ()


def missed_waiting(manager: Manager, pool_name: str, wait: float) -> Any:
    """Wait for a proxy; return the miss the manager keeps (the async one's in its task)."""
    if isinstance(manager, AsyncManager):

        async def waited() -> Any:
            assert await manager.target.acquire(pool_name, "w", 60, wait=wait) is None
            return manager.target.last_miss

        return manager.drive(waited())
    assert manager.acquire(pool_name, "w", 60, wait=wait) is None
    return manager.last_miss


def test_a_wait_that_ends_with_nothing_says_why(manager: Manager, other: RedisStorage) -> None:
    pool, _ = seed(manager, 1, max_concurrency=1)
    hold_all(other, pool.name, 1)
    miss = missed_waiting(manager, pool.name, 0.3)
    assert miss is not None and miss.reason is MissReason.ALL_BUSY
    assert (miss.proxies, miss.active, miss.available) == (1, 1, 0)
    idle, _ = seed(manager, 1, max_concurrency=1, status=ProxyStatus.INACTIVE)
    miss = missed_waiting(manager, idle.name, 0.3)
    assert miss is not None and miss.reason is MissReason.NO_ACTIVE_PROXY


def test_a_waiter_no_proxy_fits_does_not_block_the_next(
    manager: Manager, other: RedisStorage, make_storage: Callable[..., RedisStorage]
) -> None:
    """The oldest waiter wants a country no proxy has; the next one still gets the proxy."""
    pool, _ = seed(manager, 1, max_concurrency=1, country_code="US")
    (held,) = hold_all(other, pool.name, 1)
    picky = RedisProxyManager(make_storage())
    outcome: dict[str, Any] = {}

    def wait_picky() -> None:
        outcome["picky"] = picky.acquire(pool.name, "p", 60, ProxyFilters(country="FR"), wait=0.6)

    thread = threading.Thread(target=wait_picky)
    thread.start()
    deadline = time.monotonic() + 5
    while queue_length(manager, pool.id) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue_length(manager, pool.id) == 1
    with later(0.1, lambda: other.release_lease(held)):
        leased = manager.acquire(pool.name, "w", 60, wait=10)
    assert leased is not None and leased.proxy.id == held.proxy_id
    thread.join(10)
    assert outcome["picky"] is None
    assert other.audit(pool.name).drift == ()


def test_a_predicate_declines_a_handed_proxy_and_waits_for_the_next(
    manager: Manager, other: RedisStorage
) -> None:
    """Lua hands off on the filters' Lua part; the predicate decides, a no is handed on."""
    pool, proxies = seed(manager, 2, max_concurrency=1)
    wanted = proxies[1]
    first, second = hold_all(other, pool.name, 2)
    by_proxy = {first.proxy_id: first, second.proxy_id: second}
    unwanted_lease = by_proxy[proxies[0].id]

    def release_both() -> None:
        other.release_lease(unwanted_lease)
        time.sleep(0.1)
        other.release_lease(by_proxy[wanted.id])

    only = ProxyFilters(predicate=lambda proxy: proxy.id == wanted.id)
    with later(0.2, release_both):
        leased = manager.acquire(pool.name, "w", 60, only, wait=10)
    assert leased is not None and leased.proxy.id == wanted.id
    stats = other.get_pool_stats(pool.name)
    assert stats is not None and stats.total_leases == 1  # the declined proxy went back
    assert other.audit(pool.name).drift == ()


def test_an_unknown_pool_fails_at_once(manager: Manager) -> None:
    started = time.monotonic()
    with pytest.raises(PoolNotFoundError):
        manager.acquire("no-such-pool", "w", 60, wait=30)
    assert time.monotonic() - started < 5


def test_a_bad_wait_is_refused(manager: Manager) -> None:
    pool, _ = seed(manager, 1)
    bad: tuple[Any, ...] = (-1, float("nan"), float("inf"), "1", True)
    for wait in bad:
        with pytest.raises(ValueError, match="wait"):
            manager.acquire(pool.name, "w", 60, wait=wait)


def test_with_proxy_waits_too(manager: Manager, other: RedisStorage) -> None:
    pool, _ = seed(manager, 1, max_concurrency=1)
    (held,) = hold_all(other, pool.name, 1)
    with later(0.2, lambda: other.release_lease(held)):
        with manager.with_proxy(pool.name, "w", 60, wait=10) as leased:
            assert leased is not None and leased.proxy.id == held.proxy_id
    stats = other.get_pool_stats(pool.name)
    assert stats is not None and stats.total_leases == 0
    with pytest.raises(ValueError, match="not both"):
        with manager.with_proxy(pool.name, wait=1, retry_config=RetryConfig()):
            pass


def test_a_lease_handed_as_the_waiter_leaves_is_taken_not_lost(
    manager: Manager, other: RedisStorage
) -> None:
    """The cancel race: the hand-off lands between the waiter's last look and its leaving."""
    pool, _ = seed(manager, 1, max_concurrency=1)
    (held,) = hold_all(other, pool.name, 1)
    ctx = storage_of(manager).context
    asked = flows.request(pool.name, "w", 60, None, None)
    waiter = Waiter(codec.new_id(), ctx.keys.handoff_channel("nobody"), 10_000_000)
    joined = run_op(manager, acquiring.acquire(ctx, asked, False, waiter))
    assert joined.lease is None and isinstance(joined.queued, Queued)
    other.release_lease(held)  # handed to the waiter, who is about to leave
    left = run_op(manager, waiting.leave(ctx, asked, joined.queued.pool_id, waiter.id))
    assert isinstance(left, acquiring.Acquired) and left.lease is not None
    assert left.lease.id == asked.lease_id and left.proxy is not None
    assert queue_length(manager, pool.id) == 0
    assert other.audit(pool.name).drift == ()
    other.release_lease(left.lease)
    assert other.audit(pool.name).drift == ()


def test_a_waiter_that_never_looks_again_strands_nothing(
    manager: Manager, other: RedisStorage
) -> None:
    """A joined waiter past its deadline is dropped by the hand-off: the next one gets it."""
    pool, _ = seed(manager, 1, max_concurrency=1)
    (held,) = hold_all(other, pool.name, 1)
    ctx = storage_of(manager).context
    asked = flows.request(pool.name, "w", 60, None, None)
    gone = Waiter(codec.new_id(), ctx.keys.handoff_channel("nobody"), 100_000)  # 0.1 s
    assert run_op(manager, acquiring.acquire(ctx, asked, False, gone)).queued is not None
    time.sleep(0.2)
    with later(0.2, lambda: other.release_lease(held)):
        leased = manager.acquire(pool.name, "w2", 60, wait=10)
    assert leased is not None
    assert queue_length(manager, pool.id) == 0
    assert other.audit(pool.name).drift == ()


def test_a_hand_off_message_is_taken_only_for_the_lease_asked_and_when_full() -> None:
    """A message for a lease the waiter gave back since, or one to pick up, brings nothing."""
    ctx = Context(KeySchema("msg"), 60, 10)
    asked = flows.request("pool", "w", 60, None, None)

    def message(lease_id: Any, full: bytes) -> bytes:
        fields = [b"waiter", str(lease_id).encode(), full, b"{}", b"id", b"{}", b"1", b""]
        return b"".join(b"%d:%s" % (len(f), f) for f in fields)

    assert waiting.netstrings(message(asked.lease_id, b"1"))[1] == str(asked.lease_id).encode()
    pool_id = codec.new_id()
    assert waiting.handed(ctx, asked, pool_id, message(codec.new_id(), b"1")) is None
    assert waiting.handed(ctx, asked, pool_id, message(asked.lease_id, b"0")) is None
