"""``acquire(..., wait=)`` with outcomes: a hand-off respects cool-downs and target blocks.

Every test runs with the sync and the async manager on every deployment (fakeredis, a
private redis-server and valkey-server, a Redis Cluster, a Sentinel-managed master), as
``test_wait.py`` does: the waiter under test blocks on the test's thread while another
worker (``other``, with a client of its own) reports outcomes and frees proxies from a timer
thread.

- A release whose outcome cools its proxy down does not hand that proxy to a waiter: the
  outcome is applied before the slot is freed. The waiter gets the next usable proxy, or the
  same one once its cool-down has ended.
- A waiter whose acquire had ``target=D`` is not handed a proxy blocked for ``D`` (its target
  is kept in its queue entry); a waiter without a target behind it is, and the first gets
  the next proxy freed.
- A proxy put back from a cool-down (the restore step of any acquire or cleanup) is handed
  to the oldest waiter, as a proxy becoming ACTIVE is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from pharox_redis import (
    Outcome,
    OutcomePolicy,
    OutcomeStats,
    RedisProxyManager,
    RedisStorage,
    codec,
    flows,
    wait_flows,
)
from pharox_redis.leased_proxy import LeasedProxy
from pharox_redis.operations import acquire as acquiring
from pharox_redis.operations import waiting
from pharox_redis.operations.acquire import Queued, Waiter

from ..helpers.managers import run_op, seed
from .test_wait import LATE, Manager, later, storage_of

COOL_SECONDS = 0.5  # the cool-down after a first failure, for the worker reporting it


def queued(storage: RedisStorage, pool_id: Any) -> int:
    """How many waiters the pool's queue holds (read with ``storage``'s own client)."""
    return int(storage.client.zcard(storage.context.keys.pool(pool_id).waiters))


def until_queued(storage: RedisStorage, pool_id: Any, count: int) -> None:
    """Wait (5 s at most) until the pool's queue holds ``count`` waiters."""
    deadline = time.monotonic() + 5
    while queued(storage, pool_id) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queued(storage, pool_id) == count


def outcome_stats(storage: RedisStorage, pool_name: str) -> OutcomeStats:
    found = storage.get_outcome_stats(pool_name)
    assert isinstance(found, OutcomeStats)
    return found


def holding(storage: RedisStorage, pool_name: str, count: int) -> list[LeasedProxy]:
    """Lease every proxy of the pool as another worker (``storage``'s manager)."""
    holder = RedisProxyManager(storage)
    held = [holder.acquire(pool_name, "holder", 60) for _ in range(count)]
    assert all(leased is not None for leased in held)
    return [leased for leased in held if leased is not None]


def test_a_proxy_a_failure_cools_down_is_not_handed_the_next_one_is(
    manager: Manager, other: RedisStorage
) -> None:
    pool, _ = seed(manager, 2, max_concurrency=1)
    failing, fine = holding(other, pool.name, 2)
    holder = RedisProxyManager(other)

    def release_both() -> None:
        until_queued(other, pool.id, 1)
        holder.release_proxy(failing, outcome=Outcome.failed())  # cooled: not handed
        time.sleep(0.2)
        holder.release_proxy(fine)

    started = time.monotonic()
    with later(0.1, release_both):
        leased = manager.acquire(pool.name, "w", 60, wait=10)
    assert leased is not None and leased.proxy.id == fine.proxy.id
    assert time.monotonic() - started < 0.3 + LATE
    found = outcome_stats(other, pool.name)
    assert (found.cooling, found.stats.total_leases) == (1, 1)  # nothing on the cooled one
    assert queued(other, pool.id) == 0
    assert other.audit(pool.name).drift == ()


def test_a_waiter_gets_the_cooled_proxy_once_its_cool_down_ends(
    manager: Manager, make_storage: Callable[..., RedisStorage]
) -> None:
    """The failure lands while the waiter waits: not handed then, handed after the cool-down."""
    reporter = make_storage(outcomes=OutcomePolicy(base_seconds=COOL_SECONDS))
    pool, _ = seed(manager, 1, max_concurrency=1)
    (failing,) = holding(reporter, pool.name, 1)
    released: list[float] = []

    def fail() -> None:
        until_queued(reporter, pool.id, 1)
        released.append(time.monotonic())  # the cool-down ends no sooner than 0.5 s from here
        RedisProxyManager(reporter).release_proxy(failing, outcome=Outcome.failed())

    with later(0.1, fail):
        leased = manager.acquire(pool.name, "w", 60, wait=10)
    got_at = time.monotonic()
    assert leased is not None and leased.proxy.id == failing.proxy.id
    assert got_at - released[0] >= COOL_SECONDS  # never during its cool-down
    # It looks at least every CHECK_SECONDS: its look puts the proxy back and takes it.
    assert got_at - released[0] < COOL_SECONDS + wait_flows.CHECK_SECONDS + LATE
    found = outcome_stats(reporter, pool.name)
    assert (found.cooling, found.stats.total_leases) == (0, 1)
    assert reporter.audit(pool.name).drift == ()


def test_a_waiter_joining_during_a_cool_down_looks_when_it_ends(
    manager: Manager, make_storage: Callable[..., RedisStorage]
) -> None:
    """A waiter that joins while the only proxy cools down gets it right after the end."""
    reporter = make_storage(outcomes=OutcomePolicy(base_seconds=COOL_SECONDS))
    pool, _ = seed(manager, 1, max_concurrency=1)
    (failing,) = holding(reporter, pool.name, 1)
    released = time.monotonic()
    RedisProxyManager(reporter).release_proxy(failing, outcome=Outcome.failed())
    leased = manager.acquire(pool.name, "w", 60, wait=10)
    got_at = time.monotonic()
    assert leased is not None and leased.proxy.id == failing.proxy.id
    assert COOL_SECONDS <= got_at - released < COOL_SECONDS + LATE
    assert reporter.audit(pool.name).drift == ()


def test_a_waiter_for_a_target_is_not_handed_a_proxy_blocked_for_it(
    manager: Manager, other: RedisStorage, make_storage: Callable[..., RedisStorage]
) -> None:
    """The oldest waiter (target d.example) is skipped for a proxy blocked for d.example,
    which goes to the plain waiter behind it; the next proxy freed goes to the first."""
    pool, _ = seed(manager, 2, max_concurrency=1)
    blocked, fine = holding(other, pool.name, 2)
    holder = RedisProxyManager(other)
    plain = RedisProxyManager(make_storage())
    got: dict[str, Optional[LeasedProxy]] = {}
    still: dict[str, int] = {}

    def plain_waits() -> None:
        got["plain"] = plain.acquire(pool.name, "p", 60, wait=10)

    def script() -> None:
        until_queued(other, pool.id, 1)  # the target waiter (the test's thread) is first
        thread = threading.Thread(target=plain_waits)
        thread.start()
        until_queued(other, pool.id, 2)
        holder.release_proxy(blocked, outcome=Outcome.blocked("d.example"))
        thread.join(10)
        still["queued"] = queued(other, pool.id)  # the target waiter, still waiting
        holder.release_proxy(fine)

    started = time.monotonic()
    with later(0, script):
        leased = manager.acquire(pool.name, "t", 60, target="D.example.", wait=10)
    assert leased is not None and leased.proxy.id == fine.proxy.id
    assert time.monotonic() - started < 2 * LATE
    handed = got["plain"]
    assert handed is not None and handed.proxy.id == blocked.proxy.id
    assert still["queued"] == 1
    found = outcome_stats(other, pool.name)
    assert (found.blocked, found.stats.total_leases) == (1, 2)
    assert queued(other, pool.id) == 0
    assert other.audit(pool.name).drift == ()


def test_a_proxy_back_from_a_cool_down_is_handed_to_the_oldest_waiter(
    manager: Manager, make_storage: Callable[..., RedisStorage]
) -> None:
    """Another worker's acquire puts the proxy back (its restore step): the waiter has it."""
    reporter = make_storage(outcomes=OutcomePolicy(base_seconds=COOL_SECONDS))
    pool, _ = seed(manager, 1, max_concurrency=1)
    (failing,) = holding(reporter, pool.name, 1)
    RedisProxyManager(reporter).release_proxy(failing, outcome=Outcome.failed())
    ctx = storage_of(manager).context
    asked = flows.request(pool.name, "w", 60, None, None)
    waiter = Waiter(codec.new_id(), ctx.keys.handoff_channel("nobody"), 10_000_000)
    joined = run_op(manager, acquiring.acquire(ctx, asked, False, waiter))
    assert joined.lease is None and isinstance(joined.queued, Queued)
    time.sleep(COOL_SECONDS + 0.1)
    # Another worker's acquire restores the proxy, which goes to the waiter first.
    assert RedisProxyManager(reporter).acquire(pool.name, "late", 60) is None
    left = run_op(manager, waiting.leave(ctx, asked, joined.queued.pool_id, waiter.id))
    assert isinstance(left, acquiring.Acquired) and left.lease is not None
    assert left.lease.id == asked.lease_id
    assert left.proxy is not None and left.proxy.id == failing.proxy.id
    assert queued(reporter, pool.id) == 0
    assert reporter.audit(pool.name).drift == ()
    reporter.release_lease(left.lease)
    assert outcome_stats(reporter, pool.name).stats.available_proxies == 1


def test_a_waiter_for_a_target_gets_the_proxy_when_its_block_ends(
    manager: Manager, make_storage: Callable[..., RedisStorage]
) -> None:
    """The only proxy is free but blocked for the waiter's target: it looks at the block's end."""
    reporter = make_storage(outcomes=OutcomePolicy(block_seconds=COOL_SECONDS))
    pool, _ = seed(manager, 1, max_concurrency=1)
    (banned,) = holding(reporter, pool.name, 1)
    started = time.monotonic()
    RedisProxyManager(reporter).release_proxy(banned, outcome=Outcome.blocked("d.example"))
    assert outcome_stats(reporter, pool.name).stats.available_proxies == 1  # free, but not for d
    leased = manager.acquire(pool.name, "t", 60, target="d.example", wait=10)
    got_at = time.monotonic()
    assert leased is not None and leased.proxy.id == banned.proxy.id
    assert COOL_SECONDS <= got_at - started < COOL_SECONDS + LATE
    assert queued(reporter, pool.id) == 0
    assert reporter.audit(pool.name).drift == ()
