"""Expiry: never early, reclaimed by cleanup in bounded batches, history kept for the retention.

The leases here last fractions of a second: pharox types ``duration_seconds`` as int, the
adapter takes any positive number of seconds (to the microsecond), hence the ignores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

import pytest

from pharox_redis import RedisStorage

from ..helpers import Recorder, make_pool, make_proxy, recomputed_stats, stored_stats


def test_expiry_is_never_early(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=1)
    storage.save_proxy(proxy)
    storage.create_lease(proxy, "c", 1.0)  # type: ignore[arg-type]  # see the module doc
    time.sleep(0.5)
    assert storage.cleanup_expired_leases() == 0
    assert storage.find_available_proxy(pool.name) is None
    time.sleep(0.6)
    assert storage.cleanup_expired_leases() == 1
    assert storage.find_available_proxy(pool.name) is not None


def test_cleanup_costs_one_round_trip_when_nothing_expired(storage: RedisStorage) -> None:
    pools = [make_pool(storage, f"p{i}") for i in range(5)]
    proxies = [make_proxy(pool, n, max_concurrency=None) for pool in pools for n in range(40)]
    storage.add_proxies_bulk(proxies)
    for proxy in proxies[::3]:
        storage.release_lease(storage.create_lease(proxy, "c", 60))  # history
        storage.create_lease(proxy, "c", 60)  # active, not expired
    recorder = Recorder(storage)
    assert storage.cleanup_expired_leases() == 0
    assert len(recorder.batches) == 1 and len(recorder.calls) == 1
    # Expired leases in two pools: due pools, one pipelined reclaim per pool, then the
    # hints go back with the next due call, which finds nothing more.
    for proxy in (proxies[0], proxies[1], proxies[45]):
        storage.create_lease(proxy, "c", 0.1)  # type: ignore[arg-type]
    time.sleep(0.15)
    recorder.reset()
    assert storage.cleanup_expired_leases() == 3
    assert [len(b.calls) for b in recorder.batches] == [1, 2, 1]
    assert all(stored_stats(storage, p) == recomputed_stats(storage, p) for p in pools)
    # Every pool still holds 60 s leases: each keeps one hint, none of them due now.
    index = storage.context.keys.globals.deadlines
    members = [m for m in storage.client.zrange(index, 0, -1) if isinstance(m, bytes)]
    hints = {UUID(m.decode()): storage.client.zscore(index, m) for m in members}
    assert set(hints) == {p.id for p in pools}
    assert all(score is not None and score > time.time() * 1e6 + 50e6 for score in hints.values())


def test_cleanup_reclaims_more_than_one_batch(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, max_concurrency=None)
    storage.save_proxy(proxy)
    for i in range(300):  # above DUE_BATCH and RECLAIM_BATCH
        storage.create_lease(proxy, f"c{i % 7}", 0.1)  # type: ignore[arg-type]
    time.sleep(0.15)
    assert storage.cleanup_expired_leases() == 300
    assert storage.get_proxy(str(proxy.id)).current_leases == 0
    assert storage.client.zcard(storage.context.keys.globals.deadlines) == 0


@pytest.mark.slow
def test_lease_history_is_bounded_by_the_retention(
    make_storage: Callable[..., RedisStorage],
) -> None:
    # The retention leaves room for the 120 calls below on a busy machine (fakeredis runs
    # Lua slowly; with the CPUs busy they took over 1 s): none of the first 60 records may
    # be purged before it has passed.
    storage = make_storage(lease_retention_seconds=3.0)
    pool = make_pool(storage)
    proxy = make_proxy(pool)
    storage.save_proxy(proxy)
    first = [storage.create_lease(proxy, "c", 60) for _ in range(60)]
    for lease in first:
        storage.release_lease(lease)
    keys = storage.context.keys.pool(pool.id)
    assert storage.client.hlen(keys.leases) == 60
    time.sleep(3.05)
    for _ in range(4):  # each call purges up to 32 expired records
        storage.release_lease(storage.create_lease(proxy, "c", 60))
    assert storage.get_lease(str(first[0].id)) is None
    assert storage.client.hlen(keys.leases) == 4
    assert storage.client.zcard(keys.history) == 4
