"""What the managers' acquire picks: every selector and filter, against pharox's reference.

The reference is pharox's stock ``ProxyManager`` on ``InMemoryStorage`` holding the same pool
(``tests.helpers.managers.reference``): the same script of acquires and releases must pick
the same proxies, misses included.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Optional, Union
from uuid import UUID

from pharox import (
    HealthCheckResult,
    Lease,
    Proxy,
    ProxyFilters,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from ..helpers import BASE_TIME, make_pool, make_proxy, recomputed_stats, stored_stats
from ..helpers.managers import count, reference, seed

# ---------------------------------------------------------------------- selectors


def _picks(
    manager: Any, pool_name: str, selector: SelectorStrategy, script: Sequence[Union[str, int]]
) -> list[Optional[UUID]]:
    """Run a script of acquires ('a', held), acquire-and-release ('ar') and releases (held
    lease index); return the proxy ids picked, None for a miss."""
    held: list[Lease] = []
    picked: list[Optional[UUID]] = []
    for step in script:
        if isinstance(step, int):
            manager.release_proxy(held.pop(step))
            continue
        lease = manager.acquire_proxy(pool_name, selector=selector, duration_seconds=60)
        picked.append(lease.proxy_id if lease is not None else None)
        if lease is not None:
            if step == "ar":
                manager.release_proxy(lease)
            else:
                held.append(lease)
    for lease in held:
        manager.release_proxy(lease)
    return picked


def _shuffled(proxies: Sequence[Proxy], seed: int) -> list[Proxy]:
    out = list(proxies)
    random.Random(seed).shuffle(out)
    return out


SCRIPT: list[Union[str, int]] = [
    "a",
    "a",
    "a",
    0,
    "a",
    "a",
    "a",
    "a",
    1,
    2,
    "a",
    "ar",
    "a",
    "a",
    "a",
    "a",
    0,
    "a",
]


def test_first_available_picks_like_the_reference(manager: Any) -> None:
    pool = make_pool(manager.storage, "first")
    proxies = [
        make_proxy(
            pool,
            n,
            max_concurrency=[1, 2, 1, 2][n % 4],
            checked_at=BASE_TIME + timedelta(seconds=n * 7 % 5),
        )
        for n in range(5)
    ]
    # Redis orders by checked_at, newest first, whatever the insertion order; pharox's
    # in-memory adapter keeps insertion order, so it gets the proxies newest first.
    manager.storage.add_proxies_bulk(_shuffled(proxies, 1))
    newest_first = sorted(proxies, key=lambda p: p.checked_at, reverse=True)
    stock = reference(pool, newest_first)
    expected = _picks(stock, pool.name, SelectorStrategy.FIRST_AVAILABLE, SCRIPT)
    got = _picks(manager, pool.name, SelectorStrategy.FIRST_AVAILABLE, SCRIPT)
    assert got == expected
    assert got[0] == newest_first[0].id
    assert None in got and len(set(got)) == 6  # every proxy, and a miss when all are full


def test_least_used_picks_like_the_reference(manager: Any) -> None:
    pool = make_pool(manager.storage, "least")
    proxies = [
        make_proxy(
            pool, n, max_concurrency=3, checked_at=BASE_TIME + timedelta(seconds=(n * 3) % 4)
        )
        for n in range(4)
    ]
    manager.storage.add_proxies_bulk(_shuffled(proxies, 2))
    stock = reference(pool, _shuffled(proxies, 3))
    expected = _picks(stock, pool.name, SelectorStrategy.LEAST_USED, SCRIPT)
    got = _picks(manager, pool.name, SelectorStrategy.LEAST_USED, SCRIPT)
    assert got == expected
    assert len(set(got)) == 4


def test_round_robin_rotates_through_all_proxies_in_order(manager: Any) -> None:
    pool, proxies = seed(manager, 4, max_concurrency=None)
    stock = reference(pool, _shuffled(proxies, 4))
    script: list[Union[str, int]] = ["a", "ar", "a", "a", 0, "ar", "a", "a", "ar", 1, "a", "a"]
    expected = _picks(stock, pool.name, SelectorStrategy.ROUND_ROBIN, script)
    got = _picks(manager, pool.name, SelectorStrategy.ROUND_ROBIN, script)
    assert got == expected
    in_order = sorted(p.id for p in proxies)
    assert got == [in_order[i % 4] for i in range(len(got))]


def test_lowest_latency_picks_like_the_reference(manager: Any) -> None:
    pool, proxies = seed(manager, 5, max_concurrency=1)
    checks = [(0, 80), (1, 20), (3, 50), (4, 20), (3, 5), (0, 30)]  # proxy 2: no latency
    health = [
        HealthCheckResult(
            proxy_id=proxies[n].id,
            status=ProxyStatus.ACTIVE,
            latency_ms=ms,
            protocol=ProxyProtocol.HTTP,
            checked_at=BASE_TIME + timedelta(minutes=i + 1),
        )
        for i, (n, ms) in enumerate(checks)
    ]
    stock = reference(pool, proxies, health)
    for result in health:
        assert manager.storage.apply_health_check_result(result) is not None
    script: list[Union[str, int]] = ["a", "a", "a", "a", "a", "a", 1, "a", 0, "a", "ar", 2]
    expected = _picks(stock, pool.name, SelectorStrategy.LOWEST_LATENCY, script)
    got = _picks(manager, pool.name, SelectorStrategy.LOWEST_LATENCY, script)
    assert got == expected
    # 5 ms, then the 20 ms tie by id, then 30 ms, and the proxy without latency last
    tie = sorted([proxies[1].id, proxies[4].id])
    assert got[:6] == [proxies[3].id, *tie, proxies[0].id, proxies[2].id, None]


# ---------------------------------------------------------------------- filters


def _drain(manager: Any, pool_name: str, filters: Optional[ProxyFilters]) -> list[Lease]:
    leases: list[Lease] = []
    while (lease := manager.acquire_proxy(pool_name, filters=filters)) is not None:
        leases.append(lease)
        assert len(leases) < 50
    return leases


def test_filters_lease_exactly_the_matching_proxies(manager: Any) -> None:
    pool = make_pool(manager.storage, "filters")
    places = {"ba": (-34.6, -58.4), "scl": (-33.45, -70.66), "nyc": (40.71, -74.0)}
    spec = [
        ("AR", "alpha", "ba"),
        ("CL", "beta", "scl"),
        ("BR", "alpha", None),
        ("AR", "beta", "nyc"),
        ("AR", "alpha", "ba"),
    ]
    proxies = []
    for n, (country, source, place) in enumerate(spec):
        lat, lon = places[place] if place else (None, None)
        proxies.append(
            make_proxy(
                pool,
                n,
                max_concurrency=1,
                country=country,
                source=source,
                latitude=lat,
                longitude=lon,
            )
        )
    manager.storage.add_proxies_bulk(proxies)
    odd_port = proxies[3].port
    cases = {
        "equality": (ProxyFilters(country="CL"), {1}),
        "nested": (
            ProxyFilters(
                any_of=[
                    ProxyFilters(country="BR"),
                    ProxyFilters(all_of=[ProxyFilters(country="AR"), ProxyFilters(source="beta")]),
                ],
                none_of=[ProxyFilters(source="alpha", any_of=[ProxyFilters(city=None)])],
            ),
            {3},
        ),
        "geo": (ProxyFilters(latitude=-34.6, longitude=-58.4, radius_km=500), {0, 4}),
        "geo-wide": (ProxyFilters(latitude=-34.6, longitude=-58.4, radius_km=1500), {0, 1, 4}),
        "predicate": (ProxyFilters(country="AR", predicate=lambda p: p.port != odd_port), {0, 4}),
        "nothing": (ProxyFilters(country="ZZ"), set()),
        "predicate-nothing": (ProxyFilters(predicate=lambda p: False), set()),
    }
    for name, (filters, wanted) in cases.items():
        assert {n for n, p in enumerate(proxies) if filters.matches(p)} == wanted, name
        leases = _drain(manager, pool.name, filters)
        assert sorted(lease.proxy_id for lease in leases) == sorted(
            proxies[n].id for n in wanted
        ), name
        for lease in leases:
            manager.release_proxy(lease)
    assert stored_stats(manager.storage, pool)["total_leases"] == 0


def test_unknown_pool_and_exhausted_pool_give_none(manager: Any) -> None:
    assert manager.acquire_proxy("no-such-pool") is None
    assert manager.acquire("no-such-pool") is None
    pool, _ = seed(manager, 3, max_concurrency=1, status=ProxyStatus.INACTIVE)
    assert manager.acquire_proxy(pool.name) is None


def test_max_concurrency_is_respected(manager: Any) -> None:
    pool = make_pool(manager.storage, "concurrency")
    limits = [1, 2, 3]
    proxies = [make_proxy(pool, n, max_concurrency=m) for n, m in enumerate(limits)]
    manager.storage.add_proxies_bulk(proxies)
    leases = _drain(manager, pool.name, None)
    assert len(leases) == sum(limits)
    assert [count(manager, p) for p in proxies] == limits
    stats = stored_stats(manager.storage, pool)
    assert stats == recomputed_stats(manager.storage, pool)
    assert stats["total_leases"] == 6 and stats["available_proxies"] == 0
    manager.release_proxy(leases[0])
    assert manager.acquire_proxy(pool.name) is not None
    assert manager.acquire_proxy(pool.name) is None
