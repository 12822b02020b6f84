"""What rotate and batch leasing cost: one round trip of one FCALL, and the Redis work in it.

Counted on both ends of the wire (``tests.helpers.round_trips.Meter``): the batches the
storage sends, the commands the server received and the ``redis.call``s the scripts ran
(``INFO commandstats`` less what was sent). Observed on redis-server 7.0 with the layout of
this commit, warm caches, FIRST_AVAILABLE, no filter, 6 proxies without a maximum:

* acquire + release: 2 round trips, 32 ``redis.call``s;
* rotate: 1 round trip, 28 ``redis.call``s (one name check, one clock, one counters read
  and one history purge for both halves);
* acquire_many of 6: 1 round trip, 73 ``redis.call``s; release_many of 6: 1 round trip, 64:
  23 per lease for the pair, against 32 for an acquire and a release.

The assertions are relative (rotate costs fewer than an acquire plus a release; a lease of a
batch fewer than an acquire), so they hold while the lean layout changes the absolute counts.
"""

from __future__ import annotations

import pytest

from pharox_redis import RedisProxyManager, RedisStorage

from ...helpers import Recorder
from ...helpers.round_trips import Meter, Seen, script_names, seed

pytestmark = pytest.mark.real_redis


def calls(seen: Seen) -> int:
    """The ``redis.call``s the scripts ran during a measurement."""
    return sum(seen.in_scripts.values())


def test_rotate_is_one_fcall_and_less_redis_work_than_release_and_acquire(
    storage: RedisStorage, meter: Meter
) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    held = manager.acquire(pool.name, "w", 60)  # warm-up: names cached, schedule known
    assert held is not None
    with meter.measure() as cycle:
        manager.release_proxy(held)
        held = manager.acquire(pool.name, "w", 60)
    assert cycle.sent == ["FCALL release", "FCALL acquire"]
    assert held is not None
    recorder = Recorder(storage)
    with meter.measure() as seen:
        nxt = manager.rotate(held, "w", 60)
    assert nxt is not None and held.lease.released_at is not None
    assert script_names(recorder.batches) == [["rotate"]]
    assert seen.sent == ["FCALL rotate"]
    assert set(seen.stats) - set(seen.in_scripts) == {"fcall"}  # nothing else was sent
    print(f"\nredis.calls: release + acquire {calls(cycle)}, rotate {calls(seen)}")
    assert calls(seen) < calls(cycle)


def test_a_batch_is_one_fcall_and_less_redis_work_per_lease(
    storage: RedisStorage, meter: Meter
) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    first = manager.acquire(pool.name, "w", 60)  # warm-up
    assert first is not None
    with meter.measure() as single:
        manager.release_proxy(first)
        first = manager.acquire(pool.name, "w", 60)
    assert first is not None
    manager.release_proxy(first)
    acquire_calls = single.in_scripts
    recorder = Recorder(storage)
    with meter.measure() as seen:
        got = manager.acquire_many(pool.name, 6, "w", 60)
    assert len(got) == 6 and len({x.proxy.id for x in got}) == 6
    assert script_names(recorder.batches) == [["acquire_many"]]
    assert seen.sent == ["FCALL acquire_many"]
    recorder.reset()
    with meter.measure() as freed:
        manager.release_many(got)
    assert script_names(recorder.batches) == [["release_many"]]
    assert freed.sent == ["FCALL release_many"]
    print(
        f"\nredis.calls: release + acquire {sum(acquire_calls.values())}, "
        f"acquire_many(6) {calls(seen)}, release_many(6) {calls(freed)}"
    )
    assert calls(seen) + calls(freed) < 6 * sum(acquire_calls.values())
    assert storage.audit().drift == ()


def test_release_many_over_two_pools_is_one_round_trip(storage: RedisStorage, meter: Meter) -> None:
    first, second = seed(storage, "first"), seed(storage, "second")
    manager = RedisProxyManager(storage)
    held = manager.acquire_many(first.name, 2, "w") + manager.acquire_many(second.name, 3, "w")
    recorder = Recorder(storage)
    with meter.measure() as seen:
        manager.release_many(held)
    assert script_names(recorder.batches) == [["release_many", "release_many"]]
    assert seen.sent == ["FCALL release_many"] * 2
    for pool in (first, second):
        stats = storage.get_pool_stats(pool.name)
        assert stats is not None and stats.total_leases == 0
