"""An acquire that returns None says why, in the reply it already gets (no round trip more).

The reason is kept per thread or asyncio task (``manager.last_miss``) and logged at most
once a minute per pool and reason: a warning when waiting will not help (unknown pool, no
ACTIVE proxy), debug otherwise. Saving new proxies that are all INACTIVE logs a warning.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

import pytest
from pharox import ProxyFilters, ProxyStatus

from pharox_redis import (
    AcquireMiss,
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    MissReason,
    Outcome,
    OutcomePolicy,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis import misses as misses_module

from ..helpers import Recorder, make_pool, make_proxy


@pytest.fixture(autouse=True)
def fresh_log_limits() -> Iterator[None]:
    """Each test sees its first miss of a pool and reason logged."""
    misses_module._logged.clear()
    yield
    misses_module._logged.clear()


def scene(storage: RedisStorage, case: str) -> tuple[str, Optional[ProxyFilters]]:
    """Set up a pool that misses for ``case``; return its name and the filters to ask with."""
    pool = make_pool(storage, f"pool-{case}")
    if case == "no-active-proxy":
        storage.add_proxies_bulk([make_proxy(pool, n, status=ProxyStatus.INACTIVE) for n in (1, 2)])
    elif case == "all-busy":
        storage.add_proxies_bulk([make_proxy(pool, 1, max_concurrency=1)])
    elif case == "no-match":
        storage.add_proxies_bulk([make_proxy(pool, 1, country="AR")])
        return pool.name, ProxyFilters(country="XX")
    elif case in ("cooling-down", "blocked-for-target"):
        # one proxy, leased once and given back failed (a 5 min cool-down) or blocked for
        # the target; the other ACTIVE one is busy (cooling-down) or missing (blocked)
        storage.add_proxies_bulk([make_proxy(pool, 1)])
        manager = RedisProxyManager(storage)
        leased = manager.acquire(pool.name, "w")
        assert leased is not None
        cooled = case == "cooling-down"
        outcome = Outcome.failed() if cooled else Outcome.blocked(TARGET)
        manager.release_proxy(leased.lease, outcome=outcome)
        if cooled:
            storage.add_proxies_bulk([make_proxy(pool, 2, max_concurrency=1)])
            assert manager.acquire(pool.name, "w") is not None  # the other one, now busy
    return pool.name, None


CASES = {
    "unknown-pool": AcquireMiss("pool-unknown-pool", MissReason.UNKNOWN_POOL),
    "empty": AcquireMiss("pool-empty", MissReason.NO_ACTIVE_PROXY),
    "no-active-proxy": AcquireMiss("pool-no-active-proxy", MissReason.NO_ACTIVE_PROXY, 2, 0, 0),
    "all-busy": AcquireMiss("pool-all-busy", MissReason.ALL_BUSY, 1, 1, 0),
    "no-match": AcquireMiss("pool-no-match", MissReason.NO_MATCH, 1, 1, 1),
    "cooling-down": AcquireMiss("pool-cooling-down", MissReason.COOLING_DOWN, 2, 2, 0),
    "blocked-for-target": AcquireMiss(
        "pool-blocked-for-target", MissReason.BLOCKED_FOR_TARGET, 1, 1, 1
    ),
}
TARGET = "example.com"
COOL = OutcomePolicy(base_seconds=300)  # a cool-down that outlasts any loaded test


@pytest.mark.parametrize("case", list(CASES))
def test_a_miss_says_why_in_the_same_round_trip(
    make_storage: Callable[..., RedisStorage], case: str
) -> None:
    storage = make_storage(outcomes=COOL)
    manager = RedisProxyManager(storage)
    name, filters = scene(storage, case)
    if case == "unknown-pool":
        storage.delete_pool(str(storage.get_pool_by_name(name).id))
    target = TARGET if case == "blocked-for-target" else None
    # A first acquire resolves the consumer and pool names (cached from then on).
    first = manager.acquire(name, "w", filters=filters, target=target)
    if case == "all-busy":
        assert first is not None
    recorder = Recorder(storage)
    assert manager.acquire(name, "w", filters=filters, target=target) is None
    # One round trip, as for a lease (an unknown name is looked up again each time).
    assert len(recorder.batches) == 1
    assert manager.last_miss == CASES[case]
    if target is None:
        manager.acquire_proxy(name, "w", filters=filters)  # pharox's API says why too
        assert manager.last_miss == CASES[case]
    else:  # without the target the blocked proxy is leased
        assert manager.acquire(name, "w") is not None and manager.last_miss is None


def test_a_lease_clears_the_last_miss(make_storage: Callable[..., RedisStorage]) -> None:
    storage = make_storage()
    manager = RedisProxyManager(storage)
    pool = make_pool(storage)
    assert manager.acquire("pool") is None and manager.last_miss is not None
    storage.save_proxy(make_proxy(pool, 1))
    assert manager.acquire("pool") is not None and manager.last_miss is None


def test_misses_are_logged_once_at_their_level(
    make_storage: Callable[..., RedisStorage], caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_storage()
    manager = RedisProxyManager(storage)
    for case in ("no-active-proxy", "all-busy"):
        scene(storage, case)
    manager.acquire("pool-all-busy")
    caplog.set_level(logging.DEBUG, logger="pharox_redis")
    for _ in range(3):  # a polling loop
        for name in ("pool-no-active-proxy", "pool-all-busy", "nosuch"):
            assert manager.acquire(name) is None
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if "no proxy" in r.getMessage()]
    assert logged == [
        (logging.WARNING, f"acquire found no proxy: {CASES['no-active-proxy']}"),
        (logging.DEBUG, f"acquire found no proxy: {CASES['all-busy']}"),
        (logging.WARNING, "acquire found no proxy: no pool is named 'nosuch'"),
    ]
    assert "none is ACTIVE" in logged[0][1] and "status=ProxyStatus.ACTIVE" in logged[0][1]


def test_each_thread_reads_its_own_last_miss(make_storage: Callable[..., RedisStorage]) -> None:
    storage = make_storage()
    manager = RedisProxyManager(storage)
    pool = make_pool(storage)
    storage.save_proxy(make_proxy(pool, 1))
    seen: dict[str, Optional[AcquireMiss]] = {}

    def miss() -> None:
        manager.acquire("nosuch")
        seen["thread"] = manager.last_miss

    worker = threading.Thread(target=miss)
    worker.start()
    worker.join(timeout=30)
    assert manager.acquire("pool") is not None
    assert manager.last_miss is None
    thread_miss = seen["thread"]
    assert thread_miss is not None and thread_miss.reason is MissReason.UNKNOWN_POOL


def test_the_async_manager_keeps_a_miss_per_task(
    make_storage: Callable[..., RedisStorage],
    make_async_storage: Callable[..., AsyncRedisStorage],
    loop: asyncio.AbstractEventLoop,
) -> None:
    storage = make_storage()
    name, _ = scene(storage, "all-busy")
    manager = AsyncRedisProxyManager(make_async_storage())

    async def one(pool: str) -> Any:
        await manager.acquire(pool)
        await asyncio.sleep(0)  # let the other task run in between
        return manager.last_miss

    async def both() -> list[Any]:
        assert await manager.acquire(name) is not None  # takes the only proxy
        return list(await asyncio.gather(one(name), one("nosuch")))

    busy, unknown = loop.run_until_complete(both())
    assert busy == CASES["all-busy"]
    assert unknown == AcquireMiss("nosuch", MissReason.UNKNOWN_POOL)


def test_new_proxies_all_inactive_are_warned_about(
    make_storage: Callable[..., RedisStorage], caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_storage()
    pool = make_pool(storage)
    caplog.set_level(logging.WARNING, logger="pharox_redis")
    inactive = [make_proxy(pool, n, status=ProxyStatus.INACTIVE) for n in range(3)]
    storage.add_proxies_bulk(inactive)
    (warned,) = [r for r in caplog.records if "none is ACTIVE" in r.getMessage()]
    assert warned.levelno == logging.WARNING and "got 3 new proxies" in warned.getMessage()
    caplog.clear()
    storage.add_proxies_bulk(inactive)  # updates: deactivating proxies is meant
    storage.add_proxies_bulk([make_proxy(pool, 7), make_proxy(pool, 8, status="inactive")])
    assert not [r for r in caplog.records if "none is ACTIVE" in r.getMessage()]
