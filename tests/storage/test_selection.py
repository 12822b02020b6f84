"""Selectors and filters, checked against oracles of pharox's reference semantics.

The oracles are the orders pharox's PostgreSQL adapter uses and ``ProxyFilters.matches``.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any, Optional
from uuid import UUID

import pytest
from pharox import (
    Proxy,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import RedisStorage
from pharox_redis.operations.selection import MAX_UNDECIDED, SCAN_BUDGET

from ..helpers import BASE_TIME, Recorder, make_pool, make_proxy

COUNTRIES = ["AR", "CL", "BR", None]
SOURCES = ["alpha", "beta", None]
CITIES = ["x", "y", None]
POINTS = [(-34.6, -58.4), (-33.45, -70.66), (40.71, -74.0)]


def _available(p: Proxy) -> bool:
    return p.status == ProxyStatus.ACTIVE and (
        p.max_concurrency is None or p.current_leases < p.max_concurrency
    )


def _seed_random_pool(storage: RedisStorage, rng: random.Random, size: int) -> Any:
    pool = make_pool(storage, f"rand-{rng.random()}")
    proxies = []
    for n in range(size):
        lat_lon: tuple[Optional[float], Optional[float]] = (None, None)
        if rng.random() < 0.7:
            base = rng.choice(POINTS)
            lat_lon = (base[0] + rng.uniform(-3, 3), base[1] + rng.uniform(-3, 3))
        proxies.append(
            make_proxy(
                pool,
                n,
                status=rng.choice(
                    [ProxyStatus.ACTIVE] * 5 + [ProxyStatus.INACTIVE, ProxyStatus.SLOW]
                ),
                checked_at=BASE_TIME + timedelta(seconds=rng.randint(0, 5)),  # many ties
                max_concurrency=rng.choice([None, 1, 2, 3]),
                country=rng.choice(COUNTRIES),
                source=rng.choice(SOURCES),
                city=rng.choice(CITIES),
                isp=rng.choice(["isp1", "isp2", None]),
                asn=rng.choice([1, 2, None]),
                latitude=lat_lon[0],
                longitude=lat_lon[1],
            )
        )
    storage.add_proxies_bulk(proxies)
    latency: dict[UUID, tuple[Any, int]] = {}
    for proxy in proxies:
        for _ in range(rng.randint(0, 3)):
            checked = BASE_TIME + timedelta(seconds=rng.randint(0, 100))
            reachable = rng.random() < 0.8
            ms = rng.randint(10, 60)  # ties on purpose
            storage.save_health_record(
                ProxyHealthRecord(
                    proxy_id=proxy.id,
                    checked_at=checked,
                    reachable=reachable,
                    latency_ms=ms,
                    protocol=ProxyProtocol.HTTP,
                    status_after=proxy.status,
                )
            )
            if reachable and (proxy.id not in latency or checked >= latency[proxy.id][0]):
                latency[proxy.id] = (checked, ms)
    for proxy in proxies:
        if _available(proxy) and rng.random() < 0.4:
            storage.create_lease(proxy, "seed", 600)
    return pool, {pid: ms for pid, (_, ms) in latency.items()}


def _order(strategy: SelectorStrategy, latency: dict[UUID, int]) -> Any:
    if strategy is SelectorStrategy.LEAST_USED:
        return lambda p: (p.current_leases, p.checked_at, p.id)
    if strategy is SelectorStrategy.LOWEST_LATENCY:
        return lambda p: (p.id not in latency, latency.get(p.id, 0), p.id)
    return lambda p: (-p.checked_at.timestamp(), p.id)


@pytest.mark.parametrize(
    "strategy",
    [
        SelectorStrategy.FIRST_AVAILABLE,
        SelectorStrategy.LEAST_USED,
        SelectorStrategy.LOWEST_LATENCY,
    ],
)
def test_selectors_follow_the_postgres_order(
    storage: RedisStorage, strategy: SelectorStrategy
) -> None:
    rng = random.Random(7)
    pool, latency = _seed_random_pool(storage, rng, 60)
    for _ in range(15):
        proxies = storage.list_proxies(str(pool.id))
        expected = min((p for p in proxies if _available(p)), key=_order(strategy, latency))
        found = storage.find_available_proxy(pool.name, selector=strategy)
        assert found is not None and found.id == expected.id
        storage.create_lease(found, "probe", 600)  # changes lease counts and availability


def test_round_robin_cycles_in_id_order_from_a_stored_cursor(storage: RedisStorage) -> None:
    rng = random.Random(3)
    pool, _ = _seed_random_pool(storage, rng, 30)
    available = sorted(p.id for p in storage.list_proxies(str(pool.id)) if _available(p))
    got = [
        storage.find_available_proxy(pool.name, selector=SelectorStrategy.ROUND_ROBIN)
        for _ in range(2 * len(available) + 1)
    ]
    assert [p.id for p in got if p] == (available * 3)[: len(got)]
    # The cursor lives in Redis: a second storage (another process) continues the cycle.
    other = RedisStorage(storage.client, prefix=storage.context.keys.prefix)
    nxt = other.find_available_proxy(pool.name, selector=SelectorStrategy.ROUND_ROBIN)
    assert nxt is not None and nxt.id == (available * 3)[len(got)]


def _random_filter(rng: random.Random, depth: int = 0) -> ProxyFilters:
    kwargs: dict[str, Any] = {}
    for field, values in (("country", COUNTRIES), ("source", SOURCES), ("city", CITIES)):
        if rng.random() < 0.25:
            kwargs[field] = rng.choice([v for v in values if v] + [""])
    if rng.random() < 0.15:
        kwargs["asn"] = rng.choice([1, 2])
    if rng.random() < 0.2:
        lat, lon = rng.choice(POINTS)
        kwargs.update(latitude=lat, longitude=lon, radius_km=rng.choice([50.0, 200.0, 400.0]))
    if rng.random() < 0.15:
        modulus = rng.choice([2, 3])
        kwargs["predicate"] = lambda p, m=modulus: p.port % m == 0
    if depth < 3:
        for key in ("all_of", "any_of", "none_of"):
            if rng.random() < 0.25:
                kwargs[key] = [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return ProxyFilters(**kwargs)


def test_filters_match_pharox_semantics(storage: RedisStorage) -> None:
    rng = random.Random(11)
    pool, _ = _seed_random_pool(storage, rng, 80)
    proxies = [p for p in storage.list_proxies(str(pool.id)) if _available(p)]
    order = _order(SelectorStrategy.FIRST_AVAILABLE, {})
    hits = 0
    for _ in range(150):
        filters = _random_filter(rng)
        matching = [p for p in proxies if filters.matches(p)]
        expected = min(matching, key=order) if matching else None
        found = storage.find_available_proxy(pool.name, filters=filters)
        assert (found and found.id) == (expected and expected.id), filters
        hits += expected is not None
    assert 20 < hits < 150  # the random filters both hit and miss


def test_geo_exact_match_and_missing_coordinates(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    here = make_proxy(pool, 1, latitude=10.0, longitude=20.0)
    storage.add_proxies_bulk(
        [here, make_proxy(pool, 2), make_proxy(pool, 3, latitude=10.001, longitude=20.0)]
    )
    found = storage.find_available_proxy(pool.name, ProxyFilters(latitude=10.0, longitude=20.0))
    assert found is not None and found.id == here.id
    none = storage.find_available_proxy(
        pool.name, ProxyFilters(latitude=0.0, longitude=0.0, radius_km=10)
    )
    assert none is None


def test_predicate_match_anywhere_in_a_large_pool_is_found(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    size = SCAN_BUDGET + MAX_UNDECIDED * 3 + 17
    proxies = [make_proxy(pool, n) for n in range(size)]
    storage.add_proxies_bulk(proxies)
    last = min(proxies, key=lambda p: (p.checked_at, p.id))  # last in FIRST_AVAILABLE order
    recorder = Recorder(storage)
    found = storage.find_available_proxy(
        pool.name, ProxyFilters(predicate=lambda p: p.id == last.id)
    )
    assert found is not None and found.id == last.id
    assert len(recorder.batches) > 2  # it had to continue past one call's budget
    assert storage.find_available_proxy(pool.name, ProxyFilters(predicate=lambda p: False)) is None


def test_lua_filter_scan_continues_past_the_budget(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxies = [make_proxy(pool, n, country="AR") for n in range(SCAN_BUDGET + 50)]
    target = make_proxy(pool, 99_999, country="CL", checked_at=BASE_TIME - timedelta(days=1))
    storage.add_proxies_bulk([*proxies, target])
    found = storage.find_available_proxy(pool.name, ProxyFilters(country="CL"))
    assert found is not None and found.id == target.id


def test_unknown_pool_finds_nothing(storage: RedisStorage) -> None:
    assert storage.find_available_proxy("no-such-pool") is None
    assert storage.get_pool_stats("no-such-pool") is None
