"""What RedisProxyManager's operations cost: one round trip of one FCALL, warm or cold.

Counts observed (redis-server 7.0, redis-py 8), on both ends of the wire
(``tests.helpers.round_trips.Meter``):

* warm caches: acquire 1 round trip, the server receives one FCALL acquire and nothing
  else (a process's first acquire in a pool also pipelines FCALL schedule for the cleanup
  index), for every selector, with or without an equality filter, with or without
  callbacks; release 1 round trip, FCALL release.
* Cold caches (a new storage): +1 round trip per unknown consumer name (MULTI, HSETNX, HGET,
  EXEC) and +1 per unknown pool name (HGET); an unknown pool costs that HGET on every call.
* Python predicate: 1 round trip for the scan + 1 per compare-and-lease attempt.
* Once cleanup drops an idle pool from its index, the next acquire is sent again with
  FCALL schedule.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import pytest
from pharox import AcquireEventPayload, Lease, ProxyFilters, ReleaseEventPayload, SelectorStrategy

from pharox_redis import LeasedProxy, RedisProxyManager, RedisStorage
from pharox_redis.server import RedisServer

from ...helpers import Recorder
from ...helpers.round_trips import (
    ACQUIRE,
    FIRST_ACQUIRE,
    RELEASE,
    SELECTORS,
    Meter,
    new_storage,
    script_names,
    seed,
    stats_fields,
)

pytestmark = pytest.mark.real_redis


# ---------------------------------------------------------------------- RedisProxyManager


@SELECTORS
@pytest.mark.parametrize("country", [None, "AR"], ids=["no-filter", "eq-filter"])
@pytest.mark.parametrize("method", ["acquire_proxy", "acquire"])
def test_acquire_is_one_round_trip_of_one_fcall(
    storage: RedisStorage, meter: Meter, method: str, country: Optional[str], selector: Any
) -> None:
    pool = seed(storage)
    filters = ProxyFilters(country=country) if country else None
    manager = RedisProxyManager(storage)
    assert manager.acquire_proxy(pool.name, "w", 60, filters, selector) is not None  # warm-up
    recorder = Recorder(storage)
    with meter.measure() as seen:
        got = getattr(manager, method)(pool.name, "w", 60, filters, selector)
    assert len(recorder.batches) == 1
    assert script_names(recorder.batches) == [["acquire"]]
    assert seen.sent == ACQUIRE
    assert seen.stats["fcall"] == 1
    assert set(seen.stats) - set(seen.in_scripts) == {"fcall"}  # nothing else was sent
    lease = got.lease if isinstance(got, LeasedProxy) else got
    assert isinstance(lease, Lease) and lease.pool_id == pool.id
    if method == "acquire":
        assert got.proxy.id == lease.proxy_id  # the proxy as leased, its count included
        assert got.proxy.current_leases == storage.get_proxy(str(lease.proxy_id)).current_leases
    if country:
        assert storage.get_proxy(str(lease.proxy_id)).country == country


def test_release_is_one_round_trip_of_one_fcall(storage: RedisStorage, meter: Meter) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    first, second = (manager.acquire(pool.name, "w", 60) for _ in range(2))
    assert first is not None and second is not None
    recorder = Recorder(storage)
    for held in (first.lease, second):  # a Lease and a LeasedProxy alike
        recorder.reset()
        with meter.measure() as seen:
            manager.release_proxy(held)
        assert len(recorder.batches) == 1
        assert seen.sent == RELEASE and seen.stats["fcall"] == 1
        assert set(seen.stats) - set(seen.in_scripts) == {"fcall"}
    assert stats_fields(storage.get_pool_stats(pool.name))["total_leases"] == 0


def test_callbacks_cost_no_extra_round_trip(storage: RedisStorage, meter: Meter) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    acquired: list[AcquireEventPayload] = []
    released: list[ReleaseEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    manager.register_release_callback(released.append)
    manager.acquire_proxy(pool.name, "w", 60)  # warm-up
    recorder = Recorder(storage)
    with meter.measure() as seen:
        lease = manager.acquire_proxy(pool.name, "w", 60, selector=SelectorStrategy.LEAST_USED)
    assert lease is not None
    assert len(recorder.batches) == 1 and seen.sent == ACQUIRE
    payload = acquired[-1]
    assert payload.lease == lease and payload.pool_name == pool.name
    assert payload.consumer_name == "w" and payload.selector is SelectorStrategy.LEAST_USED
    assert stats_fields(payload.pool_stats) == stats_fields(storage.get_pool_stats(pool.name))
    assert stats_fields(payload.pool_stats)["total_leases"] == 2

    recorder.reset()
    with meter.measure() as seen:
        manager.release_proxy(lease)
    assert len(recorder.batches) == 1 and seen.sent == RELEASE
    done = released[-1]
    assert done.lease is lease and done.released_at == lease.released_at is not None
    assert done.lease_duration_ms is not None and done.lease_duration_ms >= 0
    assert stats_fields(done.pool_stats) == stats_fields(storage.get_pool_stats(pool.name))
    assert stats_fields(done.pool_stats)["total_leases"] == 1

    recorder.reset()
    with meter.measure() as seen:  # no proxy free: still one round trip, stats in the payload
        assert manager.acquire_proxy("no-such-pool", "w") is None
    assert len(recorder.batches) == 1 and seen.sent == ["HGET"]
    assert acquired[-1].lease is None and acquired[-1].pool_stats is None


def test_cold_caches_cost_one_round_trip_per_unknown_name(
    server: RedisServer, prefix: str, opened: list[RedisStorage], meter: Meter
) -> None:
    warm = new_storage(server, prefix, opened)
    first, second = seed(warm, "first"), seed(warm, "second")
    RedisProxyManager(warm).acquire_proxy(first.name, "x")  # the scripts are loaded
    cold = new_storage(server, prefix, opened)
    # Open two connections first: script calls keep one of their own (wire.py), and the
    # handshake of the second (HELLO) is not what is measured here.
    pool = cold.client.connection_pool  # type: ignore[union-attr]
    both = [pool.get_connection(), pool.get_connection()]
    for connection in both:
        pool.release(connection)
    manager = RedisProxyManager(cold)
    recorder = Recorder(cold)

    def measured(pool_name: str, consumer: str, batches: int, sent: list[str]) -> Any:
        recorder.reset()
        with meter.measure() as seen:
            lease = manager.acquire_proxy(pool_name, consumer, 60)
        assert len(recorder.batches) == batches, (pool_name, consumer)
        assert seen.sent == sent, (pool_name, consumer)
        return lease

    consumer = ["MULTI", "HSETNX", "HGET", "EXEC"]  # ensure_consumer: one atomic batch
    pool_name = ["HGET"]  # pool name -> id
    assert measured(first.name, "a", 3, consumer + pool_name + FIRST_ACQUIRE) is not None
    assert measured(second.name, "a", 2, pool_name + FIRST_ACQUIRE) is not None  # new pool
    assert measured(first.name, "b", 2, consumer + ACQUIRE) is not None  # new consumer
    assert measured(second.name, "b", 1, ACQUIRE) is not None  # both cached
    # An unknown pool is looked up again on every call (absence is not cached).
    assert measured("missing", "a", 1, pool_name) is None
    assert measured("missing", "a", 1, pool_name) is None
    # A release needs no name: a cold storage releases a lease made elsewhere in one.
    lease = RedisProxyManager(warm).acquire_proxy(first.name, "x")
    other = RedisProxyManager(new_storage(server, prefix, opened))
    recorder = Recorder(other.storage)
    with meter.measure() as seen:
        other.release_proxy(lease)  # type: ignore[arg-type]
    assert len(recorder.batches) == 1 and seen.sent == RELEASE


def test_predicate_costs_one_round_trip_per_compare_and_lease(
    server: RedisServer, prefix: str, opened: list[RedisStorage], meter: Meter
) -> None:
    storage = new_storage(server, prefix, opened)
    thief = new_storage(server, prefix, opened)
    pool = seed(storage, max_concurrency=1)
    manager = RedisProxyManager(storage)
    manager.acquire_proxy(pool.name, "w", 60)  # warm-up
    recorder = Recorder(storage)

    # Nothing matches: the scan alone.
    nothing = ProxyFilters(predicate=lambda p: False)
    with meter.measure() as seen:
        assert manager.acquire_proxy(pool.name, "w", 60, nothing) is None
    assert script_names(recorder.batches) == [["acquire"]]
    assert seen.sent == ACQUIRE

    # The first candidate matches: scan + one compare-and-lease.
    recorder.reset()
    anything = ProxyFilters(predicate=lambda p: True)
    with meter.measure() as seen:
        assert manager.acquire_proxy(pool.name, "w", 60, anything) is not None
    assert script_names(recorder.batches) == [["acquire"], ["lease", "schedule"]]
    assert seen.sent == [*ACQUIRE, "FCALL lease", "FCALL schedule"]

    # Another worker takes the first candidate between the scan and the lease: the
    # compare-and-lease call carries the next approved candidates too, so no extra trip.
    tested: list[Any] = []

    def stolen(proxy: Any) -> bool:
        if not tested:
            thief.create_lease(proxy, "thief", 60)
        tested.append(proxy.id)
        return True

    recorder.reset()
    lease = manager.acquire_proxy(pool.name, "w", 60, ProxyFilters(predicate=stolen))
    assert lease is not None and lease.proxy_id == tested[1] != tested[0]
    assert script_names(recorder.batches) == [["acquire"], ["lease", "schedule"]]


def test_acquire_resends_with_schedule_when_cleanup_dropped_the_pool(
    storage: RedisStorage, meter: Meter
) -> None:
    """Once cleanup drops an idle pool from its index, the next acquire schedules it again.

    The acquire goes out alone (this process's last one was covered); ``acquire.lua`` sees
    that the pool's entry is gone, changes nothing and answers 'schedule'; the acquire is
    sent again with ``schedule.lua``, and the one after that is a single FCALL again.
    """
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    short = manager.acquire_proxy(pool.name, "w", 0.05)
    assert short is not None
    time.sleep(0.1)
    assert storage.cleanup_expired_leases() == 1
    index = storage.context.keys.globals.deadlines
    assert storage.client.zscore(index, str(pool.id)) is None

    recorder = Recorder(storage)
    with meter.measure() as seen:
        lease = manager.acquire_proxy(pool.name, "w", 60)
    assert lease is not None
    assert script_names(recorder.batches) == [["acquire"], ["acquire", "schedule"]]
    assert seen.sent == [*ACQUIRE, *FIRST_ACQUIRE]
    hint = storage.client.zscore(index, str(pool.id))
    assert hint is not None and hint <= lease.expires_at.timestamp() * 1e6 + 1e6
    assert storage.audit().drift == ()

    recorder.reset()
    with meter.measure() as seen:
        assert manager.acquire_proxy(pool.name, "w", 60) is not None
    assert seen.sent == ACQUIRE


@pytest.mark.parametrize("max_concurrency", [1, 2, None], ids=["max-1", "max-2", "unlimited"])
def test_a_cycle_runs_at_most_20_commands_in_its_scripts(
    storage: RedisStorage, meter: Meter, max_concurrency: Optional[int]
) -> None:
    """Target T8: an acquire+release cycle costs at most 20 ``redis.call``s (FIRST_AVAILABLE).

    Counted by the server (``INFO commandstats`` counts the commands a script runs), on a
    warm pool: the selector's set is built, the cleanup entry covers the lease.
    """
    pool = seed(storage, size=20, max_concurrency=max_concurrency)
    manager = RedisProxyManager(storage)
    for _ in range(3):  # warm-up: the set is built, the consumer resolved, the pool covered
        warm = manager.acquire(pool.name, "w", 60)
        assert warm is not None
        manager.release_proxy(warm)
    with meter.measure() as acquired:
        leased = manager.acquire(pool.name, "w", 60)
    assert leased is not None
    with meter.measure() as released:
        manager.release_proxy(leased)
    calls = sum(acquired.in_scripts.values()), sum(released.in_scripts.values())
    assert calls[0] <= 11 and calls[1] <= 9 and sum(calls) <= 20, (acquired, released)
