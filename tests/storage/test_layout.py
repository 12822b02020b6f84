"""The pool layout: availability sets kept per selector, built in bounded steps, dropped when
idle; counters derived; one time line for deadlines and purges; 0.1.0 data migrated.
"""

from __future__ import annotations

from pharox import SelectorStrategy

from pharox_redis import RedisProxyManager, RedisStorage, replies
from pharox_redis.operations.batch import ScriptCall, one

from ..helpers import recomputed_stats, seed_pool, stored_stats


def _kept(storage: RedisStorage, pool_id: object) -> dict[str, object]:
    pk = storage.context.keys.pool(pool_id)  # type: ignore[arg-type]
    names = ("first", "least", "rr", "latency")
    flags = storage.client.hmget(pk.meta, *(f"set:{s}" for s in names))
    exists = [storage.client.exists(k) for k in (pk.first, pk.least, pk.rr, pk.latency)]
    return {
        s: (flag, bool(hit))
        for s, flag, hit in zip(names, flags, exists, strict=True)
        if flag is not None or hit
    }


def test_only_the_sets_of_the_selectors_asked_for_are_kept(storage: RedisStorage) -> None:
    pool = seed_pool(storage, 10, max_concurrency=1)
    assert _kept(storage, pool.id) == {}
    # Counters without any set: available = active - the full ones.
    held = storage.create_lease(storage.list_proxies(str(pool.id))[3], "c", 60)
    assert stored_stats(storage, pool) == recomputed_stats(storage, pool)
    assert stored_stats(storage, pool)["available_proxies"] == 9
    manager = RedisProxyManager(storage)
    leased = manager.acquire(pool.name, "w", 60)
    assert leased is not None
    assert _kept(storage, pool.id) == {"first": (b"r", True)}
    assert storage.client.zcard(storage.context.keys.pool(pool.id).first) == 8
    manager.release_proxy(leased)
    storage.release_lease(held)
    assert manager.acquire(pool.name, "w", 60, selector=SelectorStrategy.LOWEST_LATENCY)
    assert set(_kept(storage, pool.id)) == {"first", "latency"}
    assert stored_stats(storage, pool) == recomputed_stats(storage, pool)
    assert storage.audit().drift == ()


def test_a_large_set_is_built_in_bounded_steps_while_leasing_goes_on(
    storage: RedisStorage,
) -> None:
    size = 4500  # a hash table, not a listpack: HSCAN pages of about 2,000 proxies
    pool = seed_pool(storage, size, max_concurrency=1)
    pk = storage.context.keys.pool(pool.id)
    args = (pool.name, "least_used", "", 0, 1000, 64)
    proxies = storage.list_proxies(str(pool.id))
    steps, held = 0, []
    while True:
        (raw,) = storage.executor.execute(one(ScriptCall("find", pk, args)))
        reply = replies.find_reply(raw)
        if reply.code != "build":
            break
        steps += 1
        # Leasing between the steps: the set being built is kept in step with it.
        held.append(storage.create_lease(proxies[steps * 7], "c", 60))
        if steps % 2 == 0:
            storage.release_lease(held.pop(0))
    assert reply.code == "ok" and reply.found
    assert steps >= 2
    assert storage.client.hget(pk.meta, "set:least") == b"r"
    assert storage.client.zcard(pk.least) == size - len(held)
    assert storage.audit().drift == ()


def test_a_repair_drops_a_set_no_selector_used_for_a_day(storage: RedisStorage) -> None:
    pool = seed_pool(storage, 6)
    manager = RedisProxyManager(storage)
    for selector in (SelectorStrategy.FIRST_AVAILABLE, SelectorStrategy.ROUND_ROBIN):
        leased = manager.acquire(pool.name, "w", 60, selector=selector)
        assert leased is not None
        manager.release_proxy(leased)
    pk = storage.context.keys.pool(pool.id)
    storage.client.hset(pk.meta, "used:rr", 1)  # last used in 1970
    report = storage.audit()
    assert report.drift == () and report.dropped_sets == ()
    report = storage.audit(repair=True)
    assert report.drift == () and report.dropped_sets == ((pool.name, "rr"),)
    assert set(_kept(storage, pool.id)) == {"first"}
    assert manager.acquire(pool.name, "w", 60, selector=SelectorStrategy.ROUND_ROBIN)
    assert set(_kept(storage, pool.id)) == {"first", "rr"}
    assert storage.audit().drift == ()


def test_a_pool_of_0_1_0_keeps_working_and_is_migrated_by_a_repair(
    storage: RedisStorage,
) -> None:
    pool = seed_pool(storage, 6, max_concurrency=2)
    manager = RedisProxyManager(storage)
    released = manager.acquire(pool.name, "w", 60)
    active = manager.acquire(pool.name, "w", 60)
    assert released is not None and active is not None
    manager.release_proxy(released)
    # What 0.1.0 stored: released records in a zset of their own scored at their purge
    # time, five counters in meta, the four sets without flags.
    pk = storage.context.keys.pool(pool.id)
    client = storage.client
    rid = str(released.lease.id)
    purge = client.zscore(pk.deadlines, rid)
    assert purge is not None and purge % 1 == 0.5
    client.zrem(pk.deadlines, rid)
    client.zadd(pk.legacy_history, {rid: int(purge)})
    client.hset(pk.meta, mapping={"total": 6, "available": 6, "leased": 1, "leases": 1})
    client.hdel(pk.meta, "set:first", "used:first")
    client.zadd(pk.rr, {"stale": 0})
    report = storage.audit()
    assert [(d.what, d.subject) for d in report.drift] == [("legacy-layout", pk.meta)]

    # This version leases from it as it is (the set is rebuilt on first use).
    again = manager.acquire(pool.name, "w", 60)
    assert again is not None
    manager.release_proxy(again)

    repaired = storage.audit(repair=True)
    assert repaired.drift[0].what == "legacy-layout"
    assert storage.audit().drift == ()
    assert not client.exists(pk.legacy_history) and not client.exists(pk.rr)
    assert client.hget(pk.meta, "total") is None
    assert client.zscore(pk.deadlines, rid) == purge
    assert storage.get_lease(rid) is not None
    assert stored_stats(storage, pool) == recomputed_stats(storage, pool)
