"""Outcomes reported with releases: latency average, cool-downs, INACTIVE, blocks per domain.

Every backend of ``tests/conftest.py`` (fakeredis, redis-server, valkey-server). Cool-downs
are short (``FAST``) and every wait is measured on the server's clock, which stamps them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Optional
from uuid import uuid4

import pytest
from pharox import (
    HealthCheckResult,
    Lease,
    LeaseStatus,
    Proxy,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import (
    LeasedProxy,
    Outcome,
    OutcomePolicy,
    OutcomeStats,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.outcome import normalize_domain

from ..helpers import Recorder, make_pool, make_proxy

FAST = OutcomePolicy(base_seconds=0.2, max_seconds=0.8, max_failures=5, block_seconds=0.3)
LATENCY = SelectorStrategy.LOWEST_LATENCY


def server_us(storage: RedisStorage) -> int:
    seconds, micros = storage.client.time()
    return int(seconds) * 1_000_000 + int(micros)


def sleep_past(storage: RedisStorage, end_us: int) -> None:
    """Sleep until the server's clock has passed ``end_us`` (bounded: at most 2 s)."""
    for _ in range(40):
        left = end_us - server_us(storage)
        if left < 0:
            return
        time.sleep(left / 1e6 + 0.01)
    raise AssertionError("the server's clock did not pass the end")


def state(storage: RedisStorage, proxy: Proxy) -> dict[str, Any]:
    raw = storage.client.hget(storage.context.keys.pool(proxy.pool_id).state, str(proxy.id))
    assert raw is not None
    return dict(json.loads(raw))


def cooling(storage: RedisStorage, proxy: Proxy) -> Optional[int]:
    score = storage.client.zscore(storage.context.keys.pool(proxy.pool_id).cooling, str(proxy.id))
    return None if score is None else int(score)


def active(storage: RedisStorage, held: LeasedProxy) -> bool:
    found = storage.get_lease(str(held.lease.id))
    return found is not None and found.status is LeaseStatus.ACTIVE


def outcome_stats(storage: RedisStorage, pool_name: str) -> OutcomeStats:
    found = storage.get_outcome_stats(pool_name)
    assert found is not None
    return found


@pytest.fixture
def fast(make_storage: Callable[..., RedisStorage]) -> RedisStorage:
    return make_storage(outcomes=FAST)


def seeded(storage: RedisStorage, size: int, **fields: Any) -> tuple[str, list[Proxy]]:
    pool = make_pool(storage, f"pool-{uuid4().hex[:6]}")
    proxies = [make_proxy(pool, n, **fields) for n in range(size)]
    storage.add_proxies_bulk(proxies)
    return pool.name, proxies


def leased(manager: RedisProxyManager, pool: str, **kwargs: Any) -> LeasedProxy:
    got = manager.acquire(pool, duration_seconds=60, **kwargs)
    assert got is not None
    return got


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "build",
    [
        lambda: Outcome.ok(-1),
        lambda: Outcome.ok(math.nan),
        lambda: Outcome.ok(math.inf),
        lambda: Outcome.ok(True),
        lambda: Outcome.ok("12"),  # type: ignore[arg-type]
        lambda: Outcome.ok(10**13),
        lambda: Outcome.blocked(""),
        lambda: Outcome.blocked("."),
        lambda: Outcome.blocked("a b.com"),
        lambda: Outcome.blocked("https://example.com"),
        lambda: Outcome.blocked("example.com:443"),
        lambda: Outcome.blocked("example.com/path"),
        lambda: Outcome.blocked("-bad.com"),
        lambda: Outcome.blocked("a..com"),
        lambda: Outcome.blocked("example.com\n"),
        lambda: Outcome.blocked("x" * 64 + ".com"),
        lambda: Outcome.blocked(None),  # type: ignore[arg-type]
        lambda: Outcome("maybe"),
        lambda: Outcome("failed", latency_ms=3),
        lambda: Outcome("ok", latency_ms=3, domain="a.com"),
        lambda: OutcomePolicy(base_seconds=0),
        lambda: OutcomePolicy(base_seconds=2, max_seconds=1),
        lambda: OutcomePolicy(max_failures=0),
        lambda: OutcomePolicy(latency_alpha=0),
        lambda: OutcomePolicy(block_seconds=math.nan),
    ],
)
def test_bad_outcomes_and_policies_are_refused(build: Callable[[], Any]) -> None:
    with pytest.raises(ValueError):
        build()


def test_domains_are_normalised() -> None:
    assert Outcome.blocked("Example.COM.").domain == "example.com"
    assert normalize_domain("sub_1.Example-2.org") == "sub_1.example-2.org"
    assert normalize_domain("bücher.de") == "xn--bcher-kva.de"
    assert normalize_domain("10.0.0.1") == "10.0.0.1"
    assert normalize_domain("[::1]") == "::1"
    assert Outcome.ok(12.5) == Outcome("ok", latency_ms=12.5)
    with pytest.raises(AttributeError):
        Outcome.failed().kind = "ok"  # type: ignore[misc]


def test_bad_input_writes_nothing(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy,) = seeded(fast, 1)
    held = leased(manager, pool)
    with pytest.raises(ValueError):
        manager.release_proxy(held, outcome="failed")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        held.report("ok")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        manager.acquire(pool, target="not a domain")
    with pytest.raises(ValueError):
        with manager.with_proxy(pool, target="http://x.org"):
            pass  # pragma: no cover - refused before the block
    assert active(fast, held)
    assert "x" not in state(fast, proxy) and cooling(fast, proxy) is None


def test_an_unknown_lease_with_an_outcome_writes_nothing(
    fast: RedisStorage, caplog: pytest.LogCaptureFixture
) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy,) = seeded(fast, 1)
    held = leased(manager, pool)
    ghost = Lease(**{**held.lease.model_dump(), "id": uuid4()})
    before = fast.client.hgetall(fast.context.keys.pool(proxy.pool_id).state)
    with caplog.at_level(logging.WARNING, logger="pharox_redis"):
        manager.release_proxy(ghost, outcome=Outcome.failed())
    assert "not recorded: no such lease" in caplog.text
    assert fast.client.hgetall(fast.context.keys.pool(proxy.pool_id).state) == before
    assert outcome_stats(fast, pool).cooling == 0
    assert active(fast, held)


# ---------------------------------------------------------------------- latency


def test_latency_average_orders_lowest_latency(make_storage: Callable[..., RedisStorage]) -> None:
    storage = make_storage(outcomes=OutcomePolicy(latency_alpha=0.5))
    manager = RedisProxyManager(storage)
    pool, proxies = seeded(storage, 3)
    for proxy, ms in zip(proxies, (300, 100, 200), strict=True):
        lease = storage.create_lease(proxy, "w", 60)
        manager.release_proxy(lease, outcome=Outcome.ok(ms))
    assert [state(storage, p)["l"] for p in proxies] == [300, 100, 200]
    first = leased(manager, pool, selector=LATENCY)
    assert first.proxy.id == proxies[1].id
    manager.release_proxy(first, outcome=Outcome.ok(400))  # 0.5 * 400 + 0.5 * 100
    assert state(storage, proxies[1])["l"] == 250
    assert leased(manager, pool, selector=LATENCY).proxy.id == proxies[2].id
    lease = storage.create_lease(proxies[0], "w", 60)
    manager.release_proxy(lease, outcome=Outcome.ok(0.4))  # (0.4 + 300) / 2 = 150.2
    assert state(storage, proxies[0])["l"] == 150
    assert leased(manager, pool, selector=LATENCY).proxy.id == proxies[0].id
    assert storage.audit().clean


# ---------------------------------------------------------------------- failures


def test_failures_cool_a_proxy_down_longer_each_time_then_mark_it_inactive(
    fast: RedisStorage,
) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy, spare) = seeded(fast, 2)
    held = [fast.create_lease(proxy, "w", 60) for _ in range(FAST.max_failures or 0)]
    lengths = []
    for n, lease in enumerate(held[:-1], start=1):
        before = server_us(fast)
        manager.release_proxy(lease, outcome=Outcome.failed())
        end = cooling(fast, proxy)
        assert end is not None and state(fast, proxy)["x"] == n
        assert int(state(fast, proxy)["k"]) == end
        lengths.append(end - before)
        # Derived with no availability set kept (the first time), then from the set.
        assert outcome_stats(fast, pool).stats.available_proxies == 1
        for _ in range(3):  # skipped by every acquire meanwhile
            assert leased(manager, pool).proxy.id == spare.id
        assert outcome_stats(fast, pool).cooling == 1
        assert outcome_stats(fast, pool).stats.available_proxies == 1
        assert fast.audit().clean
    wanted = [min(FAST.base_seconds * 2**n, FAST.max_seconds) * 1e6 for n in range(4)]
    for length, want in zip(lengths, wanted, strict=True):
        assert want <= length < want + 150_000  # the time between two server clock reads
    manager.release_proxy(held[-1], outcome=Outcome.failed())
    assert fast.get_proxy(str(proxy.id)).status is ProxyStatus.INACTIVE
    assert cooling(fast, proxy) is None and state(fast, proxy)["x"] == FAST.max_failures
    found = outcome_stats(fast, pool)
    assert (found.cooling, found.stats.active_proxies) == (0, 1)
    assert fast.audit().clean
    fast.add_proxies_bulk([proxy])  # saved ACTIVE again: it starts afresh
    assert "x" not in state(fast, proxy)
    assert outcome_stats(fast, pool).stats.available_proxies == 2


def test_a_cooled_down_proxy_is_skipped_then_tried_again(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy,) = seeded(fast, 1, max_concurrency=1)
    for selector in SelectorStrategy:  # every selector's set is kept from here on
        manager.release_proxy(leased(manager, pool, selector=selector))
    manager.release_proxy(leased(manager, pool), outcome=Outcome.failed())
    end = cooling(fast, proxy)
    assert end is not None
    for selector in SelectorStrategy:
        assert manager.acquire(pool, selector=selector) is None
        assert fast.find_available_proxy(pool, selector=selector) is None
    assert outcome_stats(fast, pool).stats.available_proxies == 0
    sleep_past(fast, end)
    back = leased(manager, pool, selector=LATENCY)  # the acquire puts it back, then leases it
    assert back.proxy.id == proxy.id and cooling(fast, proxy) is None
    assert "k" not in state(fast, proxy) and state(fast, proxy)["x"] == 1
    manager.release_proxy(back)
    assert fast.audit().clean
    assert outcome_stats(fast, pool).stats.available_proxies == 1


def test_a_success_resets_the_failures_and_ends_a_cool_down(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy,) = seeded(fast, 1)
    first, second, third = (fast.create_lease(proxy, "w", 60) for _ in range(3))
    manager.release_proxy(first, outcome=Outcome.failed())
    manager.release_proxy(second, outcome=Outcome.failed())
    assert state(fast, proxy)["x"] == 2 and manager.acquire(pool) is None
    manager.release_proxy(third, outcome=Outcome.ok(20))  # a lease taken before the failures
    assert "x" not in state(fast, proxy) and cooling(fast, proxy) is None
    again = leased(manager, pool)
    before = server_us(fast)
    manager.release_proxy(again, outcome=Outcome.failed())
    end = cooling(fast, proxy)
    assert end is not None and end - before < (FAST.base_seconds + 0.15) * 1e6  # the first
    assert fast.audit().clean


def test_an_outcome_is_applied_once_per_lease(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy,) = seeded(fast, 1)
    held = leased(manager, pool)
    for _ in range(3):  # as a release re-sent after a lost reply would
        manager.release_proxy(held.lease, outcome=Outcome.failed())
    assert state(fast, proxy)["x"] == 1


def test_re_saving_keeps_a_cool_down(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, (proxy,) = seeded(fast, 1)
    manager.release_proxy(leased(manager, pool), outcome=Outcome.failed())
    fast.add_proxies_bulk([proxy])
    assert cooling(fast, proxy) is not None and state(fast, proxy)["x"] == 1
    assert manager.acquire(pool) is None
    assert fast.audit().clean


def test_a_plain_release_leaves_a_cool_down_and_a_health_check_ends_inactivity(
    make_storage: Callable[..., RedisStorage],
) -> None:
    storage = make_storage(outcomes=OutcomePolicy(max_failures=2))
    manager = RedisProxyManager(storage)
    pool, (proxy,) = seeded(storage, 1, max_concurrency=3)
    first, second, third = (storage.create_lease(proxy, "w", 60) for _ in range(3))
    manager.release_proxy(first, outcome=Outcome.failed())
    manager.release_proxy(second)  # its slot comes back, the proxy stays out
    assert manager.acquire(pool) is None and cooling(storage, proxy) is not None
    assert storage.audit().clean
    manager.release_proxy(third, outcome=Outcome.failed())  # the second failure in a row
    assert storage.get_proxy(str(proxy.id)).status is ProxyStatus.INACTIVE
    storage.apply_health_check_result(
        HealthCheckResult(
            proxy_id=proxy.id,
            status=ProxyStatus.ACTIVE,
            latency_ms=7,
            protocol=ProxyProtocol.HTTP,
        )
    )
    assert "x" not in state(storage, proxy) and state(storage, proxy)["l"] == 7
    assert leased(manager, pool).proxy.id == proxy.id
    assert storage.audit().clean


# ---------------------------------------------------------------------- blocks


def test_a_block_keeps_a_proxy_from_that_target_only(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, proxies = seeded(fast, 2, max_concurrency=1)
    blocked = leased(manager, pool)
    manager.release_proxy(blocked, outcome=Outcome.blocked("Shop.Example."))
    end_us = server_us(fast) + FAST.block_seconds * 1e6
    (free,) = [p for p in proxies if p.id != blocked.proxy.id]
    found = outcome_stats(fast, pool)
    assert (found.cooling, found.blocked, found.stats.available_proxies) == (0, 1, 2)
    for selector in SelectorStrategy:
        got = leased(manager, pool, selector=selector, target="shop.example")
        assert got.proxy.id == free.id
        assert manager.acquire(pool, target="SHOP.example.") is None  # only `blocked` is free
        other = leased(manager, pool, selector=selector, target="news.example")
        assert other.proxy.id == blocked.proxy.id
        manager.release_many([got, other])
    no_target = [leased(manager, pool) for _ in proxies]  # not blocked without a target
    manager.release_many(no_target)
    assert fast.audit().clean
    sleep_past(fast, int(end_us))
    both = [leased(manager, pool, target="shop.example") for _ in proxies]
    assert {got.proxy.id for got in both} == {p.id for p in proxies}
    assert outcome_stats(fast, pool).blocked == 0


def test_a_rotate_applies_the_outcome_before_it_picks(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, proxies = seeded(fast, 2)
    held = leased(manager, pool)
    (first,) = [p for p in proxies if p.id == held.proxy.id]
    held.report(Outcome.failed())
    rotated = manager.rotate(held, duration_seconds=60)
    assert rotated is not None and rotated.proxy.id != first.id
    assert cooling(fast, first) is not None
    again = manager.rotate(rotated, outcome=Outcome.blocked("a.example"), target="a.example")
    assert again is None  # first cools down, second is blocked for a.example
    assert state(fast, first)["x"] == 1 and outcome_stats(fast, pool).blocked == 1


def test_release_many_sends_each_reported_outcome(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, _ = seeded(fast, 3)
    held = manager.acquire_many(pool, 3, duration_seconds=60)
    held[0].report(Outcome.failed())
    held[1].report(Outcome.ok(5))
    recorder = Recorder(fast)
    manager.release_many(held)
    assert len(recorder.batches) == 1
    proxies = [got.proxy for got in held]
    assert state(fast, proxies[0])["x"] == 1 and state(fast, proxies[1])["l"] == 5
    assert "l" not in state(fast, proxies[2]) and "x" not in state(fast, proxies[2])
    assert outcome_stats(fast, pool).cooling == 1


# ---------------------------------------------------------------------- audit


def test_the_audit_finds_and_repairs_cool_down_drift(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, proxies = seeded(fast, 2)
    held = leased(manager, pool)
    manager.release_proxy(held, outcome=Outcome.failed())
    (proxy,) = [p for p in proxies if p.id == held.proxy.id]
    (other,) = [p for p in proxies if p.id != held.proxy.id]
    keys = fast.context.keys.pool(proxy.pool_id)
    gone = str(uuid4())
    fast.client.zadd(keys.cooling, {gone: 5})
    fast.client.zadd(keys.blocked, {f"a.example {gone}": 5})
    fast.client.zrem(keys.cooling, str(proxy.id))
    report = fast.audit()
    found = {(d.what, d.subject) for d in report.drift}
    assert found == {
        ("cooling", str(proxy.id)),  # cooling, but not on the time line
        ("cooling", gone),  # on the time line, but no such proxy
        ("cooling", "(cool)"),  # the pool's lower bound is past the entry at 5
        ("blocked", f"a.example {gone}"),
        ("counter", "active"),  # counted from the time line: the repair fixes that first
    }
    assert not fast.audit(repair=True).clean
    assert fast.audit().clean
    fast.client.hset(keys.meta, "cool", 10**17)  # a later lower bound: nothing would end
    assert [(d.what, d.subject) for d in fast.audit().drift] == [("cooling", "(cool)")]
    assert not fast.audit(repair=True).clean
    assert fast.audit().clean
    assert cooling(fast, proxy) is not None and fast.client.zcard(keys.blocked) == 0
    assert leased(manager, pool).proxy.id == other.id


def test_one_round_trip_with_or_without_outcome_or_target(fast: RedisStorage) -> None:
    manager = RedisProxyManager(fast)
    pool, _ = seeded(fast, 2)
    manager.release_proxy(leased(manager, pool))  # warm-up: names resolved, schedule set
    recorder = Recorder(fast)
    for outcome in (None, Outcome.ok(3), Outcome.failed(), Outcome.blocked("a.example")):
        got = leased(manager, pool, target="a.example")
        manager.release_proxy(got, outcome=outcome)
    assert [len(b.calls) for b in recorder.batches] == [1] * 8


def test_outcomes_from_many_threads_keep_the_pool_exact(
    make_storage: Callable[..., RedisStorage],
) -> None:
    policy = OutcomePolicy(
        base_seconds=0.005, max_seconds=0.02, max_failures=1000, block_seconds=0.02
    )
    storages = [make_storage(outcomes=policy) for _ in range(4)]
    pool, proxies = seeded(storages[0], 6, max_concurrency=1)
    outcomes = [Outcome.ok(5), Outcome.failed(), Outcome.blocked("a.example"), None]
    most: list[int] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        manager = RedisProxyManager(storages[n])
        try:
            for i in range(40):
                target = "a.example" if i % 2 else None
                got = manager.acquire(pool, duration_seconds=30, target=target)
                if got is not None:
                    most.append(outcome_stats(storages[n], pool).stats.total_leases)
                    manager.release_proxy(got, outcome=outcomes[(n + i) % len(outcomes)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(storages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(most) >= 40 and max(most) <= len(proxies)
    assert storages[0].audit().clean
    found = outcome_stats(storages[0], pool)
    assert found.stats.total_leases == 0 and found.cooling + found.stats.available_proxies <= 6


def test_single_scripts_apply_outcomes_as_the_library_does(
    make_storage: Callable[..., RedisStorage],
) -> None:
    storage = make_storage(outcomes=FAST, functions=False)  # EVALSHA, as on Redis 6.2
    manager = RedisProxyManager(storage)
    pool, (proxy, other) = seeded(storage, 2, max_concurrency=1)
    manager.release_proxy(storage.create_lease(proxy, "w", 60), outcome=Outcome.failed())
    manager.release_proxy(storage.create_lease(other, "w", 60), outcome=Outcome.blocked("a.b"))
    assert manager.acquire(pool, target="a.b") is None
    assert leased(manager, pool).proxy.id == other.id
    found = outcome_stats(storage, pool)
    assert (found.cooling, found.blocked) == (1, 1) and storage.audit().clean
