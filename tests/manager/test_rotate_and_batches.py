"""Rotate and batch leasing: ``rotate``, ``acquire_many`` and ``release_many``.

Every test runs with RedisProxyManager and AsyncRedisProxyManager (``conftest.py``) on every
deployment. pharox's stock ``ProxyManager`` on ``InMemoryStorage`` is the reference: a rotate
picks what a release followed by an acquire picks there, and a batch of leases on proxies
with ``max_concurrency=1`` what k acquires in a row pick. Each test ends with a clean audit.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Optional
from uuid import UUID, uuid4

import pytest
from pharox import (
    AcquireEventPayload,
    HealthCheckResult,
    Lease,
    LeaseStatus,
    Proxy,
    ProxyFilters,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    ReleaseEventPayload,
    SelectorStrategy,
)

from pharox_redis import LeasedProxy, RedisStorage
from pharox_redis.batch_flows import many_request
from pharox_redis.operations import many, rotate
from pharox_redis.operations.acquire import AcquireRequest
from pharox_redis.operations.batch import ScriptCall

from ..helpers import BASE_TIME, Recorder, make_pool, make_proxy, recomputed_stats, stored_stats
from ..helpers.managers import count, counters, is_async, reference, run_op, seed

SELECTORS = pytest.mark.parametrize("selector", list(SelectorStrategy), ids=lambda s: s.value)


@pytest.fixture(autouse=True)
def audited(manager: Any) -> Any:
    """Every test leaves the keyspace as the audit expects it: no drift at all."""
    yield
    report = manager.storage.audit()
    assert report.drift == (), report


def recorder(manager: Any) -> Recorder:
    return Recorder(manager.storage.target if is_async(manager) else manager.storage)


def varied_pool(
    manager: Any, selector: SelectorStrategy
) -> tuple[ProxyPool, list[Proxy], list[HealthCheckResult]]:
    """Five proxies whose order differs per selector: mixed limits, check times, latencies.

    For ROUND_ROBIN without limits: pharox's in-memory cursor and ours agree on a pool whose
    proxies are all available (tests/manager/test_selection.py), not on one with full ones.
    """
    pool = make_pool(manager.storage, f"varied-{uuid4().hex[:6]}")
    limits = [None] * 5 if selector is SelectorStrategy.ROUND_ROBIN else [1, 2, 1, 2, 1]
    proxies = [
        make_proxy(
            pool,
            n,
            max_concurrency=limits[n],
            checked_at=BASE_TIME + timedelta(seconds=n * 7 % 5),
        )
        for n in range(5)
    ]
    manager.storage.add_proxies_bulk(proxies)
    health = [
        HealthCheckResult(
            proxy_id=proxies[n].id,
            status=ProxyStatus.ACTIVE,
            latency_ms=ms,
            protocol=ProxyProtocol.HTTP,
            checked_at=BASE_TIME + timedelta(minutes=i + 1),
        )
        for i, (n, ms) in enumerate([(0, 80), (1, 20), (3, 50), (4, 20), (2, 5)])
    ]
    for result in health:
        assert manager.storage.apply_health_check_result(result) is not None
    return pool, proxies, health


def names(rec: Recorder) -> list[list[str]]:
    """The scripts (or commands) of each round trip recorded."""
    return [
        [c.name if isinstance(c, ScriptCall) else type(c).__name__ for c in b.calls]
        for b in rec.batches
    ]


def ids(leases: list[Any]) -> list[UUID]:
    return [x.proxy.id if isinstance(x, LeasedProxy) else x.proxy_id for x in leases]


# ---------------------------------------------------------------------- rotate


@SELECTORS
def test_rotate_picks_what_a_release_then_an_acquire_picks(
    manager: Any, selector: SelectorStrategy
) -> None:
    pool, _, health = varied_pool(manager, selector)
    stored = {p.id: p for p in manager.storage.list_proxies(str(pool.id))}
    order = sorted(stored.values(), key=lambda p: (-p.checked_at.timestamp(), str(p.id)))
    stock = reference(pool, order, health)
    got: list[Optional[UUID]] = []
    expected: list[Optional[UUID]] = []
    held = [manager.acquire(pool.name, selector=selector) for _ in range(3)]
    mine: list[Any] = [stock.acquire_proxy(pool.name, selector=selector) for _ in range(3)]
    assert ids(held) == ids(mine)
    for turn in range(8):
        i = turn % 3
        before = held[i]
        held[i] = manager.rotate(before, selector=selector)
        assert before.lease.released_at is not None and not before.lost
        stock.release_proxy(mine[i])
        mine[i] = stock.acquire_proxy(pool.name, selector=selector)
        got.append(None if held[i] is None else held[i].proxy.id)
        expected.append(None if mine[i] is None else mine[i].proxy_id)
        assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
        if held[i] is None:  # a miss: acquire afresh on both sides
            held[i] = manager.acquire(pool.name, selector=selector)
            mine[i] = stock.acquire_proxy(pool.name, selector=selector)
            assert ids([held[i]]) == ids([mine[i]])
    assert got == expected
    for leased in held:
        manager.release_proxy(leased)
    assert stored_stats(manager.storage, pool)["total_leases"] == 0


def test_rotate_is_one_round_trip_and_keeps_the_lease_rules(manager: Any) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=1)
    first = manager.acquire(pool.name, "w", 60, selector=SelectorStrategy.ROUND_ROBIN)
    assert first is not None
    rec = recorder(manager)
    # A lease ending no earlier than the pool's cleanup entry needs no schedule.lua (as acquire)
    nxt = manager.rotate(first, "w", 90, selector=SelectorStrategy.ROUND_ROBIN)
    assert names(rec) == [["rotate"]]
    assert nxt is not None and nxt.proxy.id != first.proxy.id
    assert nxt.lease.pool_name == pool.name and nxt.lease.pool_id == pool.id
    assert nxt.lease.consumer_id == manager.storage.ensure_consumer("w")
    assert nxt.lease.expires_at - nxt.lease.acquired_at == timedelta(seconds=90)
    assert nxt.lease.acquired_at == first.lease.released_at  # one script, one server clock
    assert 85 < nxt.remaining <= 90 * 0.99 and not nxt.lost  # the local deadline comes first
    assert manager.storage.get_lease(str(first.lease.id)).status is LeaseStatus.RELEASED
    assert manager.storage.get_lease(str(nxt.lease.id)) == nxt.lease
    assert [count(manager, p) for p in proxies].count(1) == 1
    manager.release_proxy(nxt)


def test_rotate_with_filters_and_a_predicate(manager: Any, other: RedisStorage) -> None:
    pool = make_pool(manager.storage, f"rf-{uuid4().hex[:6]}")
    countries = ["AR", "US", "AR", "US", "AR", "AR"]
    proxies = [make_proxy(pool, n, max_concurrency=1, country=c) for n, c in enumerate(countries)]
    manager.storage.add_proxies_bulk(proxies)
    ar = ProxyFilters(country="AR")
    leased = manager.acquire(pool.name, filters=ar)
    seen = [leased.proxy.id]
    for _ in range(6):  # Lua filter: only AR proxies, moving on round robin
        leased = manager.rotate(leased, filters=ar, selector=SelectorStrategy.ROUND_ROBIN)
        assert leased is not None and leased.proxy.country == "AR"
        seen.append(leased.proxy.id)
    assert set(seen) == {p.id for p in proxies if p.country == "AR"}
    # A predicate: the held lease is released and only approved proxies are leased.
    odd = ProxyFilters(predicate=lambda p: p.port % 2 == 1)
    rec = recorder(manager)
    leased = manager.rotate(leased, filters=odd)
    assert leased is not None and leased.proxy.port % 2 == 1
    trips = names(rec)
    assert trips[0] == ["rotate"] and trips[1][0] == "lease"  # scan, then compare-and-lease
    # Another worker takes the first approved candidates meanwhile: the walk goes on.
    tested: list[UUID] = []

    def stolen(proxy: Proxy) -> bool:
        if proxy.port % 2 == 0:
            return False
        if not tested:
            other.create_lease(proxy, "thief", 60)
        tested.append(proxy.id)
        return True

    theirs = manager.rotate(leased, filters=ProxyFilters(predicate=stolen))
    assert theirs is not None and theirs.proxy.id == tested[1] != tested[0]
    assert theirs.proxy.port % 2 == 1 and count(manager, theirs.proxy) == 1
    # Nothing matches: the release is done all the same.
    none = manager.rotate(theirs, filters=ProxyFilters(country="ZZ"))
    assert none is None and theirs.lease.released_at is not None
    assert count(manager, theirs.proxy) == 0
    for lease in other.list_leases():
        if lease.status is LeaseStatus.ACTIVE:
            other.release_lease(lease)
    assert stored_stats(manager.storage, pool)["total_leases"] == 0


def test_rotate_callbacks_see_the_release_then_the_acquire(manager: Any) -> None:
    pool, _ = seed(manager, 2, max_concurrency=1)
    events: list[Any] = []
    manager.register_acquire_callback(events.append)
    manager.register_release_callback(events.append)
    leased = manager.acquire(pool.name, "cb")
    events.clear()
    nxt = manager.rotate(leased, "cb", selector=SelectorStrategy.LEAST_USED)
    assert nxt is not None
    released, acquired = events
    assert isinstance(released, ReleaseEventPayload) and released.lease is leased.lease
    assert released.released_at == leased.lease.released_at
    assert isinstance(acquired, AcquireEventPayload) and acquired.lease == nxt.lease
    assert acquired.pool_name == pool.name and acquired.consumer_name == "cb"
    assert acquired.selector is SelectorStrategy.LEAST_USED
    # Both carry the counters after the whole call (the release and the lease).
    assert counters(released.pool_stats) == counters(acquired.pool_stats)
    assert counters(acquired.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    events.clear()
    assert manager.rotate(nxt, "cb", filters=ProxyFilters(country="ZZ")) is None
    released, missed = events
    assert missed.lease is None and counters(missed.pool_stats)["total_leases"] == 0


def test_rotating_a_lost_lease_acquires_and_reports_the_loss(
    manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Decided: the rotate still acquires; the lost lease is reported as release reports it."""
    pool, proxies = seed(manager, 2, max_concurrency=1)
    leased = manager.acquire(pool.name, duration_seconds=0.05)
    assert leased is not None
    deadline = leased.lease.expires_at
    while manager.storage.get_lease(str(leased.lease.id)).status is LeaseStatus.ACTIVE:
        pass  # the server's clock, not ours: wait until it shows the lease over
    with caplog.at_level(logging.WARNING, logger="pharox_redis"):
        nxt = manager.rotate(leased, duration_seconds=60)
    assert nxt is not None and not nxt.lost
    assert leased.lost and leased.lease.released_at == deadline
    assert "reached its deadline" in caplog.text
    # Rotating a lease released before: no warning, the acquire still happens.
    manager.release_proxy(nxt)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pharox_redis"):
        again = manager.rotate(nxt, duration_seconds=60)
    assert again is not None and not nxt.lost and not caplog.text
    manager.release_proxy(again)
    assert [count(manager, p) for p in proxies] == [0, 0]


def test_a_rotate_sent_twice_makes_one_lease_and_one_release(manager: Any) -> None:
    pool, (spare, proxy) = seed(manager, 2, max_concurrency=None)  # the newest is first
    storage = manager.storage
    for filters in (None, ProxyFilters(predicate=lambda p: p.id == proxy.id)):
        held, kept = (manager.acquire_proxy(pool.name, "r", 60) for _ in range(2))
        assert held.proxy_id == kept.proxy_id == proxy.id and count(manager, proxy) == 2
        request = AcquireRequest(
            pool.name, "r", 60, filters, SelectorStrategy.FIRST_AVAILABLE, uuid4()
        )
        first = run_op(manager, rotate.rotate(storage.context, held, request))
        second = run_op(manager, rotate.rotate(storage.context, held, request))
        assert first.acquired.lease == second.acquired.lease
        assert first.acquired.lease.id == request.lease_id
        assert not first.released.expired and not second.released.expired
        assert first.released.released_at == second.released.released_at is not None
        assert count(manager, proxy) == 2  # one released, one made: kept's slot untouched
        assert count(manager, spare) == 0
        assert storage.get_lease(str(kept.id)).status is LeaseStatus.ACTIVE
        manager.release_proxy(first.acquired.lease)
        manager.release_proxy(kept)
    assert stored_stats(storage, pool)["total_leases"] == 0


# ---------------------------------------------------------------------- acquire_many


@SELECTORS
def test_acquire_many_picks_what_k_acquires_pick(manager: Any, selector: SelectorStrategy) -> None:
    pool, proxies, health = varied_pool(manager, selector)
    stored = manager.storage.list_proxies(str(pool.id))
    order = sorted(stored, key=lambda p: (-p.checked_at.timestamp(), str(p.id)))
    stock = reference(pool, order, health)
    robin = selector is SelectorStrategy.ROUND_ROBIN
    ones = {p.id for p in proxies if robin or p.max_concurrency == 1}
    only_ones = ProxyFilters(predicate=lambda p: p.id in ones)  # distinct = k acquires
    rec = recorder(manager)
    batch = manager.acquire_many(pool.name, 2, filters=only_ones, selector=selector)
    expected = [stock.acquire_proxy(pool.name, filters=only_ones, selector=selector)]
    expected.append(stock.acquire_proxy(pool.name, filters=only_ones, selector=selector))
    assert ids(batch) == ids(expected)
    if robin:  # unlimited proxies: the rest of the rotation, distinct, in id order
        rest = manager.acquire_many(pool.name, 3, selector=selector)
        stock_rest = [stock.acquire_proxy(pool.name, selector=selector) for _ in range(3)]
        assert ids(rest) == ids(stock_rest)
        assert sorted(ids(batch + rest)) == ids(batch + rest) == sorted(p.id for p in proxies)
    else:
        rest = manager.acquire_many(pool.name, 5, selector=selector, distinct=False)
        stock_rest = [stock.acquire_proxy(pool.name, selector=selector) for _ in range(5)]
        stock_rest = [lease for lease in stock_rest if lease is not None]
        assert sorted(ids(rest)) == sorted(ids(stock_rest))  # the pool's remaining slots
        if selector is SelectorStrategy.FIRST_AVAILABLE:
            assert ids(rest) == ids(stock_rest)  # filling in order is k acquires in a row
        assert [count(manager, p) for p in proxies] == [p.max_concurrency for p in proxies]
        assert manager.acquire_many(pool.name, 3, selector=selector) == []
    assert names(rec)[-1] == ["acquire_many"], names(rec)
    for leased in [*batch, *rest]:
        assert leased.proxy.current_leases <= (leased.proxy.max_concurrency or 10**9)
        assert leased.lease.status is LeaseStatus.ACTIVE and not leased.lost
    manager.release_many([*batch, *rest])
    assert stored_stats(manager.storage, pool)["total_leases"] == 0


def test_distinct_or_filled_never_above_max_concurrency(manager: Any) -> None:
    pool = make_pool(manager.storage, f"limits-{uuid4().hex[:6]}")
    limits = [1, 2, 3]
    proxies = [make_proxy(pool, n, max_concurrency=m) for n, m in enumerate(limits)]
    manager.storage.add_proxies_bulk(proxies)
    rec = recorder(manager)
    distinct = manager.acquire_many(pool.name, 5)
    assert len(rec.batches) <= 2  # one, plus one to resolve the pool name the first time
    assert sorted(ids(distinct)) == sorted(p.id for p in proxies)  # each proxy once
    filled = manager.acquire_many(pool.name, 10, distinct=False)
    assert len(filled) == sum(limits) - 3
    assert [count(manager, p) for p in proxies] == limits
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
    assert manager.acquire_many(pool.name, 1, distinct=False) == []
    manager.release_many(distinct + filled)
    unlimited, _ = seed(manager, 1, max_concurrency=None)
    same = manager.acquire_many(unlimited.name, 4, distinct=False)
    assert len(same) == 4 and len(set(ids(same))) == 1  # no maximum: one proxy takes all
    assert len(manager.acquire_many(unlimited.name, 4)) == 1  # distinct: once
    manager.release_many(same)


def test_all_or_nothing_leaves_nothing_leased_when_it_cannot_get_k(manager: Any) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=1, country="AR")
    extra, _ = seed(manager, 2, max_concurrency=2)
    before = stored_stats(manager.storage, pool)
    cases = [
        (pool.name, 4, None, True),
        (pool.name, 3, ProxyFilters(predicate=lambda p: p.port != proxies[0].port), True),
        (pool.name, 3, ProxyFilters(country="US"), True),
        (extra.name, 5, None, False),
        (extra.name, 3, None, True),
    ]
    for name, k, filters, distinct in cases:
        got = manager.acquire_many(name, k, filters=filters, all_or_nothing=True, distinct=distinct)
        assert got == [], (name, k, filters)
    assert stored_stats(manager.storage, pool) == before
    assert manager.storage.list_leases() == []
    whole = manager.acquire_many(pool.name, 3, all_or_nothing=True)
    assert sorted(ids(whole)) == sorted(p.id for p in proxies)
    both = manager.acquire_many(extra.name, 4, all_or_nothing=True, distinct=False)
    assert len(both) == 4
    manager.release_many(whole + both)


def test_acquire_many_with_filters_and_a_predicate(manager: Any, other: RedisStorage) -> None:
    pool = make_pool(manager.storage, f"mf-{uuid4().hex[:6]}")
    countries = ["AR", "US", "AR", "US", "AR", "CL"]
    proxies = [make_proxy(pool, n, max_concurrency=1, country=c) for n, c in enumerate(countries)]
    manager.storage.add_proxies_bulk(proxies)
    ar = manager.acquire_many(pool.name, 10, filters=ProxyFilters(country="AR"))
    assert sorted(ids(ar)) == sorted(p.id for p in proxies if p.country == "AR")
    manager.release_many(ar)
    wanted = {proxies[1].id, proxies[5].id}
    picky = ProxyFilters(predicate=lambda p: p.id in wanted)
    got = manager.acquire_many(pool.name, 10, filters=picky)
    assert sorted(ids(got)) == sorted(wanted)
    manager.release_many(got)
    mixed = ProxyFilters(country="AR", predicate=lambda p: p.port != proxies[0].port)
    got = manager.acquire_many(pool.name, 2, filters=mixed, all_or_nothing=True)
    assert sorted(ids(got)) == sorted([proxies[2].id, proxies[4].id])
    manager.release_many(got)
    # Others take approved candidates between the scan and the lease: what is left is taken.
    stolen: list[UUID] = []

    def thief(proxy: Proxy) -> bool:
        if len(stolen) < 2:
            other.create_lease(proxy, "thief", 60)
            stolen.append(proxy.id)
        return True

    got = manager.acquire_many(pool.name, 6, filters=ProxyFilters(predicate=thief))
    assert len(got) == 4 and not set(ids(got)) & set(stolen)
    manager.release_many(got)
    for lease in other.list_leases():
        if lease.status is LeaseStatus.ACTIVE:
            other.release_lease(lease)
    assert stored_stats(manager.storage, pool)["total_leases"] == 0


def test_acquire_many_callbacks_get_one_event_per_lease(manager: Any) -> None:
    pool, _ = seed(manager, 3, max_concurrency=1)
    acquired: list[AcquireEventPayload] = []
    released: list[ReleaseEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    manager.register_release_callback(released.append)
    got = manager.acquire_many(pool.name, 2, "cb", selector=SelectorStrategy.LEAST_USED)
    assert [p.lease for p in acquired] == [x.lease for x in got]
    after = counters(manager.storage.get_pool_stats(pool.name))
    for payload in acquired:
        assert payload.consumer_name == "cb" and payload.pool_name == pool.name
        assert payload.selector is SelectorStrategy.LEAST_USED
        assert counters(payload.pool_stats) == after
    manager.release_many(got)
    assert [p.lease for p in released] == [x.lease for x in got]
    assert all(x.lease.released_at is not None for x in got)
    assert counters(released[-1].pool_stats)["total_leases"] == 0
    acquired.clear()
    assert manager.acquire_many("no-such-pool", 2) == []
    (miss,) = acquired
    assert miss.lease is None and miss.pool_stats is None


def test_acquire_many_sent_twice_makes_the_leases_once(manager: Any) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=1)
    storage = manager.storage
    for filters in (None, ProxyFilters(predicate=lambda p: True)):
        asked = many_request(pool.name, 2, "r", 60, filters, None, False, True)
        first = run_op(manager, many.acquire_many(storage.context, asked))
        second = run_op(manager, many.acquire_many(storage.context, asked))
        assert [lease for lease, _ in first.leases] == [lease for lease, _ in second.leases]
        assert [lease.id for lease, _ in first.leases] == list(asked.lease_ids)
        assert sum(count(manager, p) for p in proxies) == 2
        manager.release_many([lease for lease, _ in first.leases])
        late = run_op(manager, many.acquire_many(storage.context, asked))
        assert late.leases == []  # released since: a late retry holds nothing, takes nothing
        assert sum(count(manager, p) for p in proxies) == 0


def test_bad_batch_arguments_are_refused(manager: Any) -> None:
    pool, _ = seed(manager, 1)
    for k in (0, -1, 1001, 2.0, True, "3"):
        with pytest.raises(ValueError):
            manager.acquire_many(pool.name, k)
    with pytest.raises(ValueError):
        manager.rotate("not a lease")
    assert manager.storage.list_leases() == []


# ---------------------------------------------------------------------- release_many


def test_release_many_of_leases_in_two_pools_in_one_round_trip(manager: Any) -> None:
    first, _ = seed(manager, 3, max_concurrency=1)
    second, _ = seed(manager, 2, max_concurrency=2)
    held = manager.acquire_many(first.name, 3)
    held += manager.acquire_many(second.name, 4, distinct=False)
    leases: list[Any] = [held[0].lease, *held[1:]]  # a Lease and LeasedProxies alike
    rec = recorder(manager)
    manager.release_many(leases)
    assert names(rec) == [["release_many"] * 2]
    for pool in (first, second):
        assert stored_stats(manager.storage, pool)["total_leases"] == 0
    for leased in held:
        assert leased.lease.released_at is not None and not leased.lost
        stored = manager.storage.get_lease(str(leased.lease.id))
        assert stored.status is LeaseStatus.RELEASED
    manager.release_many(leases)  # idempotent: nothing below zero
    manager.release_many([])
    for pool in (first, second):
        assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)


def test_release_many_reports_overruns(manager: Any, caplog: pytest.LogCaptureFixture) -> None:
    pool, _ = seed(manager, 2, max_concurrency=1)
    short = manager.acquire_many(pool.name, 1, duration_seconds=0.05)
    (late,) = short
    kept = manager.acquire(pool.name, duration_seconds=60)
    while manager.storage.get_lease(str(late.lease.id)).status is LeaseStatus.ACTIVE:
        pass
    with caplog.at_level(logging.WARNING, logger="pharox_redis"):
        manager.release_many([late, kept])
    assert late.lost and not kept.lost
    assert caplog.text.count("reached its deadline") == 1


def test_lease_records_are_what_pharox_models_say(manager: Any) -> None:
    pool, _ = seed(manager, 2, max_concurrency=1)
    got = manager.acquire_many(pool.name, 2, "m", 45)
    for leased in got:
        lease: Lease = leased.lease
        assert lease.pool_id == pool.id and lease.pool_name == pool.name
        assert lease.expires_at - lease.acquired_at == timedelta(seconds=45)
        assert manager.storage.get_lease(str(lease.id)) == lease
        assert leased.proxy.id == lease.proxy_id and leased.proxy.current_leases == 1
    assert got[0].lease.acquired_at == got[1].lease.acquired_at  # one script, one clock
    manager.release_many(got)


def test_a_batch_whose_walk_runs_out_of_budget_goes_on(
    manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sparse matches: the walk stops at its budget, the batch goes on page by page."""
    monkeypatch.setattr(many, "SCAN_BUDGET", 3)  # candidates examined per call
    pool = make_pool(manager.storage, f"sparse-{uuid4().hex[:6]}")
    countries = ["US", "US", "AR", "US", "US", "US", "AR", "US", "US", "AR"]
    proxies = [make_proxy(pool, n, max_concurrency=1, country=c) for n, c in enumerate(countries)]
    manager.storage.add_proxies_bulk(proxies)
    ar = ProxyFilters(country="AR")
    wanted = sorted(p.id for p in proxies if p.country == "AR")
    assert manager.acquire_many(pool.name, 4, filters=ar, all_or_nothing=True) == []
    assert manager.storage.list_leases() == []
    rec = recorder(manager)
    whole = manager.acquire_many(pool.name, 3, filters=ar, all_or_nothing=True)
    assert sorted(ids(whole)) == wanted
    assert sum(trip[0] == "acquire_many" for trip in names(rec)) > 2  # walk, scans, then ids
    manager.release_many(whole)
    some = manager.acquire_many(pool.name, 5, filters=ar, selector=SelectorStrategy.LEAST_USED)
    assert sorted(ids(some)) == wanted
    manager.release_many(some)
    assert stored_stats(manager.storage, pool)["total_leases"] == 0
