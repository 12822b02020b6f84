"""The managers: RedisProxyManager and AsyncRedisProxyManager, one set of tests for both.

Every test runs four times: sync and async manager, each on fakeredis and on a private
redis-server. The async manager runs behind ``AsyncManager``, a facade that runs its
coroutines on the test's loop and turns its async context managers into sync ones, so the
test bodies read the same. Pools are seeded through the manager's own storage (the sync
``RedisStorage`` or the async one through the facade), and state is read back from Redis.
pharox's ``InMemoryStorage`` with its stock ``ProxyManager`` is the reference semantics.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union
from uuid import UUID, uuid4

import pytest
import redis
from pharox import (
    AcquireEventPayload,
    HealthCheckResult,
    InMemoryStorage,
    InvalidLeaseError,
    Lease,
    LeaseStatus,
    PoolStatsSnapshot,
    Proxy,
    ProxyCredentials,
    ProxyFilters,
    ProxyManager,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    ReleaseEventPayload,
    RetryConfig,
    SelectorStrategy,
)

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    LeaseLostError,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.operations import acquire
from pharox_redis.operations.acquire import AcquireRequest
from pharox_redis.operations.batch import Batch, Op, ScriptCall

from .helpers import (
    BASE_TIME,
    AsyncFacade,
    make_pool,
    make_proxy,
    recomputed_stats,
    sleeper,
    stored_stats,
)

STATS_FIELDS = (
    "total_proxies",
    "active_proxies",
    "available_proxies",
    "leased_proxies",
    "total_leases",
)


class AsyncManager(AsyncFacade):
    """An AsyncRedisProxyManager driven from sync code; ``storage`` is driven the same way."""

    def __init__(self, manager: AsyncRedisProxyManager, loop: asyncio.AbstractEventLoop):
        super().__init__(manager, loop)
        self.storage = AsyncFacade(manager.storage, loop)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manager(
    kind: str,
    make_storage: Callable[..., RedisStorage],
    make_async_storage: Callable[..., AsyncRedisStorage],
    loop: asyncio.AbstractEventLoop,
) -> Any:
    """The manager under test: sync, or async behind the facade."""
    if kind == "sync":
        return RedisProxyManager(make_storage())
    return AsyncManager(AsyncRedisProxyManager(make_async_storage()), loop)


@pytest.fixture
def other(make_storage: Callable[..., RedisStorage]) -> RedisStorage:
    """Another worker on the same keyspace, with a client (and caches) of its own."""
    return make_storage()


@pytest.fixture
def server_now(make_client: Callable[..., Any]) -> Callable[[], datetime]:
    """The Redis server's clock, the one leases are stamped with."""
    client = make_client()

    def now() -> datetime:
        seconds, micros = client.time()
        return datetime.fromtimestamp(int(seconds), timezone.utc) + timedelta(
            microseconds=int(micros)
        )

    return now


# ---------------------------------------------------------------------- helpers


def counters(stats: Optional[PoolStatsSnapshot]) -> dict[str, int]:
    assert stats is not None
    return {k: getattr(stats, k) for k in STATS_FIELDS}


def seed(manager: Any, proxies_per_pool: int = 1, **fields: Any) -> tuple[ProxyPool, list[Proxy]]:
    """Seed a pool through the manager's own storage."""
    pool = make_pool(manager.storage, f"pool-{uuid4().hex[:6]}")
    proxies = [make_proxy(pool, n, **fields) for n in range(proxies_per_pool)]
    assert manager.storage.add_proxies_bulk(proxies) == len(proxies)
    return pool, proxies


def count(manager: Any, proxy: Proxy) -> int:
    return int(manager.storage.get_proxy(str(proxy.id)).current_leases)


def recording_sleep(manager: Any, sleeps: list[float]) -> Any:
    """A sleep_fn recording its waits: a coroutine function for the async manager."""
    if isinstance(manager, AsyncManager):

        async def record(seconds: float) -> None:
            sleeps.append(seconds)

        return record
    return sleeps.append


def is_async(manager: Any) -> bool:
    return isinstance(manager, AsyncManager)


def run_op(manager: Any, op: Op[Any]) -> Any:
    """Run a sans-I/O operation on the manager's storage executor (sync or async)."""
    if is_async(manager):
        return manager.storage.drive(manager.storage.target.executor.run(op))
    return manager.storage.executor.run(op)


# ---------------------------------------------------------------------- acquire


def test_acquire_proxy_returns_a_pharox_lease_on_the_server_clock(
    manager: Any, server_now: Callable[[], datetime]
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=2)
    before = server_now()
    lease = manager.acquire_proxy(pool.name, consumer_name="worker-1", duration_seconds=45)
    after = server_now()
    assert isinstance(lease, Lease)
    assert lease.proxy_id == proxy.id
    assert lease.pool_name == pool.name and lease.pool_id == pool.id
    assert lease.consumer_id == manager.storage.ensure_consumer("worker-1")
    assert lease.status is LeaseStatus.ACTIVE and lease.released_at is None
    assert before <= lease.acquired_at <= after
    assert lease.expires_at - lease.acquired_at == timedelta(seconds=45)
    assert manager.storage.get_lease(str(lease.id)) == lease
    assert count(manager, proxy) == 1
    default = manager.acquire_proxy(pool.name, duration_seconds=1.5)
    assert default is not None
    assert default.consumer_id == manager.storage.ensure_consumer("default")
    assert default.expires_at - default.acquired_at == timedelta(seconds=1.5)
    assert count(manager, proxy) == 2
    assert manager.acquire_proxy(pool.name) is None  # max_concurrency 2


def test_acquire_returns_the_proxy_with_its_credentials_and_url(manager: Any) -> None:
    pool = make_pool(manager.storage, "creds")
    proxy = Proxy(
        host="2001:db8::7",
        port=1080,
        protocol=ProxyProtocol.SOCKS5,
        pool_id=pool.id,
        status=ProxyStatus.ACTIVE,
        credentials=ProxyCredentials(user="us er@corp", password="p:a/ss%w?rd#&=+ñ"),
        max_concurrency=3,
        country="AR",
    )
    manager.storage.save_proxy(proxy)
    first = manager.acquire(pool.name, consumer_name="c", duration_seconds=30)
    assert isinstance(first, LeasedProxy)
    assert first.lease.proxy_id == proxy.id and first.proxy.id == proxy.id
    assert str(first.proxy.host) == str(proxy.host) and first.proxy.port == 1080
    assert first.proxy.protocol is ProxyProtocol.SOCKS5
    assert first.proxy.credentials == proxy.credentials
    assert first.proxy.country == "AR" and first.proxy.max_concurrency == 3
    stored = manager.storage.get_proxy(str(proxy.id))
    assert first.url == proxy.url == stored.url
    assert first.url.startswith("socks5://us+er%40corp:p%3Aa%2Fss%25w%3Frd%23%26%3D%2B%C3%B1@")
    assert first.url.endswith("@[2001:db8::7]:1080")
    assert first.proxy.current_leases == 1 == stored.current_leases
    second = manager.acquire(pool.name, consumer_name="c", duration_seconds=30)
    assert second is not None and second.proxy.current_leases == 2
    assert second.lease.id != first.lease.id
    assert manager.storage.get_lease(str(second.lease.id)) == second.lease


@pytest.mark.parametrize("duration", [0, -1, float("nan"), "x"])
def test_bad_durations_are_refused_before_anything_is_written(
    manager: Any, duration: object
) -> None:
    pool, (proxy,) = seed(manager)
    with pytest.raises(InvalidLeaseError):
        manager.acquire_proxy(pool.name, duration_seconds=duration)
    with pytest.raises(InvalidLeaseError):
        manager.acquire(pool.name, duration_seconds=duration)
    assert count(manager, proxy) == 0
    assert manager.storage.list_leases() == []


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


def _reference(
    pool: ProxyPool, proxies: Sequence[Proxy], health: Sequence[HealthCheckResult] = ()
) -> ProxyManager:
    storage = InMemoryStorage()
    storage.add_pool(pool)
    for proxy in proxies:
        storage.add_proxy(proxy)
    for result in health:
        storage.apply_health_check_result(result)
    return ProxyManager(storage)


def _shuffled(proxies: Sequence[Proxy], seed: int) -> list[Proxy]:
    out = list(proxies)
    random.Random(seed).shuffle(out)
    return out


SCRIPT = ["a", "a", "a", 0, "a", "a", "a", "a", 1, 2, "a", "ar", "a", "a", "a", "a", 0, "a"]


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
    reference = _reference(pool, newest_first)
    expected = _picks(reference, pool.name, SelectorStrategy.FIRST_AVAILABLE, SCRIPT)
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
    reference = _reference(pool, _shuffled(proxies, 3))
    expected = _picks(reference, pool.name, SelectorStrategy.LEAST_USED, SCRIPT)
    got = _picks(manager, pool.name, SelectorStrategy.LEAST_USED, SCRIPT)
    assert got == expected
    assert len(set(got)) == 4


def test_round_robin_rotates_through_all_proxies_in_order(manager: Any) -> None:
    pool, proxies = seed(manager, 4, max_concurrency=None)
    reference = _reference(pool, _shuffled(proxies, 4))
    script = ["a", "ar", "a", "a", 0, "ar", "a", "a", "ar", 1, "a", "a"]
    expected = _picks(reference, pool.name, SelectorStrategy.ROUND_ROBIN, script)
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
    reference = _reference(pool, proxies, health)
    for result in health:
        assert manager.storage.apply_health_check_result(result) is not None
    script = ["a", "a", "a", "a", "a", "a", 1, "a", 0, "a", "ar", 2]
    expected = _picks(reference, pool.name, SelectorStrategy.LOWEST_LATENCY, script)
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


# ---------------------------------------------------------------------- callbacks


def test_callbacks_get_pharox_payloads_with_the_stats_after(manager: Any) -> None:
    pool, _ = seed(manager, 3, max_concurrency=1, country="AR")
    acquired: list[AcquireEventPayload] = []
    released: list[ReleaseEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    manager.register_release_callback(released.append)
    awaited: list[Any] = []
    if is_async(manager):

        async def on_acquire(payload: AcquireEventPayload) -> None:
            await asyncio.sleep(0)
            awaited.append(payload)

        async def on_release(payload: ReleaseEventPayload) -> None:
            await asyncio.sleep(0)
            awaited.append(payload)

        manager.register_acquire_callback(on_acquire)
        manager.register_release_callback(on_release)

    filters = ProxyFilters(country="AR")
    lease = manager.acquire_proxy(
        pool.name, consumer_name="cb", filters=filters, selector=SelectorStrategy.LEAST_USED
    )
    assert lease is not None
    (payload,) = acquired
    assert isinstance(payload, AcquireEventPayload)
    assert payload.lease == lease
    assert payload.pool_name == pool.name and payload.consumer_name == "cb"
    assert payload.selector is SelectorStrategy.LEAST_USED
    assert payload.filters is filters
    assert payload.started_at <= payload.completed_at and payload.duration_ms >= 0
    assert payload.pool_stats is not None and payload.pool_stats.pool_name == pool.name
    assert counters(payload.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    assert payload.pool_stats.total_leases == 1 and payload.pool_stats.available_proxies == 2

    # a miss calls back too, with no lease
    assert manager.acquire_proxy(pool.name, filters=ProxyFilters(country="ZZ")) is None
    miss = acquired[-1]
    assert miss.lease is None and miss.consumer_name == "default"
    assert miss.selector is SelectorStrategy.FIRST_AVAILABLE
    assert counters(miss.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    assert manager.acquire_proxy("no-such-pool") is None
    assert acquired[-1].lease is None and acquired[-1].pool_stats is None
    assert acquired[-1].pool_name == "no-such-pool"

    manager.release_proxy(lease)
    (release,) = released
    assert isinstance(release, ReleaseEventPayload)
    assert release.lease.id == lease.id and release.pool_name == pool.name
    assert lease.released_at is not None and release.released_at == lease.released_at
    assert release.lease_duration_ms == int(
        (lease.released_at - lease.acquired_at).total_seconds() * 1000
    )
    assert release.lease_duration_ms is not None and release.lease_duration_ms >= 0
    assert counters(release.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))
    assert release.pool_stats is not None and release.pool_stats.total_leases == 0

    # the context managers go through the same callbacks
    with manager.with_proxy(pool.name) as leased:
        assert leased is not None
    assert len(acquired) == 4 and len(released) == 2
    assert released[-1].lease.id == leased.lease.id
    if is_async(manager):
        assert [type(p) for p in awaited] == [
            AcquireEventPayload,
            AcquireEventPayload,
            AcquireEventPayload,
            ReleaseEventPayload,
            AcquireEventPayload,
            ReleaseEventPayload,
        ]
        assert awaited[0] is acquired[0] and awaited[3] is released[0]


# ---------------------------------------------------------------------- release


def test_release_is_idempotent_takes_a_leased_proxy_and_stamps_released_at(
    manager: Any,
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=2)
    lease = manager.acquire_proxy(pool.name)
    leased = manager.acquire(pool.name)
    assert lease is not None and leased is not None
    for _ in range(3):
        manager.release_proxy(lease)
        assert count(manager, proxy) == 1
        assert stored_stats(manager.storage, pool)["total_leases"] == 1
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED
    assert lease.released_at is not None and stored.released_at == lease.released_at
    assert lease.released_at >= lease.acquired_at
    manager.release_proxy(leased)  # a LeasedProxy
    assert leased.lease.released_at is not None
    for _ in range(3):
        manager.release_proxy(leased)
        manager.release_proxy(lease)
    assert count(manager, proxy) == 0
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
    stored = manager.storage.get_lease(str(leased.lease.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED


# ---------------------------------------------------------------------- context managers


def test_context_managers_release_on_exit_and_on_exception(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    with manager.with_proxy(pool.name, consumer_name="ctx") as leased:
        assert isinstance(leased, LeasedProxy)
        stored = manager.storage.get_lease(str(leased.lease.id))
        assert stored is not None and stored.status is LeaseStatus.ACTIVE
        assert count(manager, proxy) == 1
    assert leased.lease.released_at is not None
    assert manager.storage.get_lease(str(leased.lease.id)).status is LeaseStatus.RELEASED
    assert count(manager, proxy) == 0

    held: list[Lease] = []
    for open_block in (
        lambda: manager.with_lease(pool.name),
        lambda: manager.with_proxy(pool.name),
        lambda: manager.with_retrying_lease(pool.name, max_attempts=1),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            with open_block() as got:
                lease = got.lease if isinstance(got, LeasedProxy) else got
                assert isinstance(lease, Lease)
                held.append(lease)
                assert count(manager, proxy) == 1
                raise RuntimeError("boom")
        assert count(manager, proxy) == 0
    assert all(
        manager.storage.get_lease(str(lease.id)).status is LeaseStatus.RELEASED for lease in held
    )

    with manager.with_lease("no-such-pool") as nothing:
        assert nothing is None
    with manager.with_proxy(pool.name, filters=ProxyFilters(country="ZZ")) as nothing:
        assert nothing is None
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)


# ---------------------------------------------------------------------- retry


def _reference_sleeps(**retry: Any) -> list[float]:
    pool = ProxyPool(name="empty")
    reference = _reference(pool, [])
    sleeps: list[float] = []
    assert reference.acquire_proxy_with_retry(pool.name, sleep_fn=sleeps.append, **retry) is None
    return sleeps


def test_retry_spaces_attempts_like_pharox_and_gives_up(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    holder = manager.acquire_proxy(pool.name)
    attempts: list[AcquireEventPayload] = []
    manager.register_acquire_callback(attempts.append)
    retry = {
        "max_attempts": 5,
        "backoff_seconds": 0.01,
        "backoff_multiplier": 3.0,
        "max_backoff_seconds": 0.2,
    }
    sleeps: list[float] = []
    got = manager.acquire_proxy_with_retry(
        pool.name, sleep_fn=recording_sleep(manager, sleeps), **retry
    )
    assert got is None
    assert sleeps == _reference_sleeps(**retry) == pytest.approx([0.01, 0.03, 0.09, 0.2])
    assert len(attempts) == 5 and all(a.lease is None for a in attempts)

    config = RetryConfig(max_attempts=3, backoff_seconds=0.02, backoff_multiplier=2.0)
    sleeps.clear()
    with manager.with_retrying_lease(
        pool.name, retry_config=config, sleep_fn=recording_sleep(manager, sleeps)
    ) as nothing:
        assert nothing is None
    assert sleeps == _reference_sleeps(retry_config=config) == pytest.approx([0.02, 0.04])

    with manager.with_proxy(
        pool.name, retry_config=RetryConfig(max_attempts=2, backoff_seconds=0.01)
    ) as nothing:
        assert nothing is None
    assert count(manager, proxy) == 1
    manager.release_proxy(holder)


def test_retry_gets_the_proxy_once_it_is_released(manager: Any, other: RedisStorage) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    holder = other.create_lease(proxy, "someone-else", 60)
    sleeps: list[float] = []

    def release_on_first_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            other.release_lease(holder)

    sleep_fn: Any = release_on_first_sleep
    if is_async(manager):

        async def async_sleep(seconds: float) -> None:
            release_on_first_sleep(seconds)

        sleep_fn = async_sleep
    with manager.with_retrying_lease(
        pool.name, max_attempts=5, backoff_seconds=0.01, sleep_fn=sleep_fn
    ) as lease:
        assert lease is not None and lease.proxy_id == proxy.id
        assert count(manager, proxy) == 1
    assert sleeps == [0.01, 0.02]
    assert count(manager, proxy) == 0
    lease_again = manager.acquire_proxy_with_retry(pool.name, sleep_fn=sleep_fn)
    assert lease_again is not None and sleeps == [0.01, 0.02]  # no wait when one is free
    manager.release_proxy(lease_again)


# ---------------------------------------------------------------------- renew


def test_renew_moves_the_deadline_on_the_server(
    manager: Any, server_now: Callable[[], datetime]
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=2)
    lease = manager.acquire_proxy(pool.name, duration_seconds=30)
    acquired_at = lease.acquired_at
    before = server_now()
    renewed = manager.renew_lease(lease, 120)
    after = server_now()
    assert renewed is lease
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.ACTIVE
    assert stored.expires_at == lease.expires_at
    assert before + timedelta(seconds=120) <= stored.expires_at <= after + timedelta(seconds=120)
    assert stored.acquired_at == acquired_at
    leased = manager.acquire(pool.name, duration_seconds=30)
    assert leased is not None
    manager.renew_lease(leased, 0.5)  # shorter is allowed too: "from now"
    stored = manager.storage.get_lease(str(leased.lease.id))
    assert stored.expires_at == leased.lease.expires_at
    assert stored.expires_at - leased.lease.acquired_at < timedelta(seconds=30)
    assert count(manager, proxy) == 2


def test_a_renewed_lease_outlives_its_first_duration(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    lease = manager.acquire_proxy(pool.name, duration_seconds=0.3)
    manager.renew_lease(lease, 5)
    time.sleep(0.45)
    assert manager.cleanup_expired_leases() == 0
    assert manager.acquire_proxy(pool.name) is None  # acquire reclaims too: nothing due
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.ACTIVE
    assert count(manager, proxy) == 1
    manager.release_proxy(lease)
    assert count(manager, proxy) == 0


def test_renewing_a_lost_lease_raises_lease_lost(manager: Any) -> None:
    assert issubclass(LeaseLostError, InvalidLeaseError)
    pool, (proxy,) = seed(manager, max_concurrency=None)
    released = manager.acquire_proxy(pool.name)
    manager.release_proxy(released)
    with pytest.raises(LeaseLostError) as info:
        manager.renew_lease(released, 60)
    assert info.value.lease is released

    expired = manager.acquire_proxy(pool.name, duration_seconds=0.2)
    time.sleep(0.3)
    with pytest.raises(LeaseLostError):
        manager.renew_lease(expired, 60)
    assert expired.status is LeaseStatus.RELEASED
    stored = manager.storage.get_lease(str(expired.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED
    assert count(manager, proxy) == 0  # the renew reclaimed it
    with pytest.raises(LeaseLostError):
        manager.renew_lease(expired, 60)  # and it stays lost
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)


@pytest.mark.parametrize("duration", [0, -1, float("nan"), "x"])
def test_renew_refuses_bad_durations(manager: Any, duration: object) -> None:
    pool, _ = seed(manager)
    lease = manager.acquire_proxy(pool.name, duration_seconds=60)
    with pytest.raises(InvalidLeaseError) as info:
        manager.renew_lease(lease, duration)
    assert not isinstance(info.value, LeaseLostError)
    stored = manager.storage.get_lease(str(lease.id))
    assert stored == lease and stored.status is LeaseStatus.ACTIVE


# ---------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("method", ["with_proxy", "with_lease"])
def test_keep_alive_holds_the_lease_through_a_long_block(
    manager: Any, method: str, server_now: Callable[[], datetime]
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    sleep = sleeper(manager)
    started = time.monotonic()
    with getattr(manager, method)(pool.name, duration_seconds=0.3, keep_alive=True) as got:
        lease = got.lease if isinstance(got, LeasedProxy) else got
        assert isinstance(lease, Lease)
        for _ in range(5):
            sleep(0.2)
            stored = manager.storage.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.ACTIVE
            assert stored.expires_at > server_now()
        assert manager.cleanup_expired_leases() == 0
        assert manager.acquire_proxy(pool.name) is None
        if isinstance(got, LeasedProxy):
            assert not got.lost
            got.check()
    assert time.monotonic() - started >= 1.0
    assert lease.expires_at - lease.acquired_at > timedelta(seconds=0.9)  # renewed
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED
    assert count(manager, proxy) == 0


def test_keep_alive_notices_a_lease_taken_away(manager: Any, other: RedisStorage) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    sleep = sleeper(manager)
    with pytest.raises(LeaseLostError) as info:
        with manager.with_proxy(pool.name, duration_seconds=0.3, keep_alive=True) as leased:
            assert leased is not None
            other.release_lease(leased.lease)  # someone else releases it
            taken = time.monotonic()
            while not leased.lost and time.monotonic() - taken < 1.5:
                sleep(0.05)
            assert leased.lost and time.monotonic() - taken < 1.0
            with pytest.raises(LeaseLostError):
                leased.check()
            if is_async(manager):
                assert manager.block_cancelled  # the async manager cancels the block
    assert info.value.lease.id == leased.lease.id
    assert count(manager, proxy) == 0
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
    lease = manager.acquire_proxy(pool.name)
    assert lease is not None  # the proxy is free again, counters intact
    manager.release_proxy(lease)


# ---------------------------------------------------------------------- core semantics


def test_an_acquire_sent_twice_makes_one_lease(manager: Any) -> None:
    pool, proxies = seed(manager, 2, max_concurrency=None)
    storage = manager.storage
    for filters in (None, ProxyFilters(predicate=lambda p: p.id == proxies[1].id)):
        request = AcquireRequest(
            pool_name=pool.name,
            consumer_name="retrier",
            duration_seconds=60,
            filters=filters,
            selector=SelectorStrategy.FIRST_AVAILABLE,
            lease_id=uuid4(),
        )
        first = run_op(manager, acquire.acquire(storage.context, request))
        second = run_op(manager, acquire.acquire(storage.context, request))
        assert first.lease is not None and second.lease is not None
        assert first.proxy is not None and second.proxy is not None
        assert first.lease.id == second.lease.id == request.lease_id
        assert second.lease == first.lease
        assert second.proxy.id == first.proxy.id
        proxy = next(p for p in proxies if p.id == first.proxy.id)
        assert count(manager, proxy) == 1
        assert stored_stats(storage, pool)["total_leases"] == 1
        assert second.stats(pool.name).total_leases == 1
        manager.release_proxy(first.lease)
        # once released, a late retry holds nothing and takes nothing
        late = run_op(manager, acquire.acquire(storage.context, request))
        assert late.lease is None
        assert count(manager, proxy) == 0
    assert len(storage.list_leases()) == 2


def test_a_candidate_taken_meanwhile_is_skipped_never_raised(
    manager: Any, other: RedisStorage
) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=1)
    order = sorted(proxies, key=lambda p: p.checked_at, reverse=True)  # FIRST_AVAILABLE
    stolen: list[UUID] = []

    def steal(limit: int) -> Callable[[Proxy], bool]:
        def predicate(proxy: Proxy) -> bool:
            if proxy.id not in stolen and len(stolen) < limit:
                # another worker leases this very candidate between the scan and the
                # compare-and-lease
                other.create_lease(proxy, "thief", 60)
                stolen.append(proxy.id)
            return True

        return predicate

    acquired: list[AcquireEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    lease = manager.acquire_proxy(pool.name, filters=ProxyFilters(predicate=steal(1)))
    assert stolen == [order[0].id]
    assert lease is not None and lease.proxy_id == order[1].id
    assert [count(manager, p) for p in order] == [1, 1, 0]

    # every candidate is taken under its feet: None, not ProxyUnavailableError
    lease2 = manager.acquire_proxy(pool.name, filters=ProxyFilters(predicate=steal(3)))
    assert lease2 is None
    assert stolen == [order[0].id, order[2].id]
    assert acquired[-1].lease is None
    assert [count(manager, p) for p in order] == [1, 1, 1]
    stats = stored_stats(manager.storage, pool)
    assert stats == recomputed_stats(manager.storage, pool)
    assert stats["total_leases"] == 3 and stats["available_proxies"] == 0
    assert manager.acquire_proxy(pool.name) is None


def test_helpers_facade_turns_coroutines_sync(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The facade itself: errors raised on entering or in the block come out unchanged."""

    class Thing:
        async def add(self, a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a + b

        def section(self, fail_enter: bool) -> Any:
            from contextlib import asynccontextmanager

            @asynccontextmanager
            async def cm() -> Any:
                if fail_enter:
                    raise KeyError("enter")
                yield 7

            return cm()

    facade = AsyncFacade(Thing(), loop)
    assert facade.add(2, 3) == 5
    with facade.section(False) as value:
        assert value == 7 and not facade.block_cancelled
    with pytest.raises(KeyError):
        with facade.section(True):
            pass
    with pytest.raises(ValueError):
        with facade.section(False):
            raise ValueError


def test_a_miss_after_lost_races_reports_the_stats_after(manager: Any, other: RedisStorage) -> None:
    """The miss payload's pool_stats must not predate leases the manager ran into."""
    pool, _ = seed(manager, 2, max_concurrency=1)

    def taken_meanwhile(proxy: Proxy) -> bool:
        other.create_lease(proxy, "thief", 60)
        return True

    acquired: list[AcquireEventPayload] = []
    manager.register_acquire_callback(acquired.append)
    assert manager.acquire_proxy(pool.name, filters=ProxyFilters(predicate=taken_meanwhile)) is None
    (miss,) = acquired
    assert miss.lease is None
    assert counters(manager.storage.get_pool_stats(pool.name))["total_leases"] == 2
    assert counters(miss.pool_stats) == counters(manager.storage.get_pool_stats(pool.name))


# ---------------------------------------------------------------------- concurrency, failures


def test_concurrent_acquires_never_exceed_max_concurrency(manager: Any) -> None:
    pool, proxies = seed(manager, 3, max_concurrency=2)
    n = 10
    if is_async(manager):
        leases = manager.gather(manager.target.acquire_proxy(pool.name) for _ in range(n))
    else:
        barrier = threading.Barrier(n)

        def one(_: int) -> Optional[Lease]:
            barrier.wait()
            lease: Optional[Lease] = manager.acquire_proxy(pool.name)
            return lease

        with ThreadPoolExecutor(n) as executor:
            leases = list(executor.map(one, range(n)))
    got = [lease for lease in leases if lease is not None]
    assert len(got) == 6 and len({lease.id for lease in got}) == 6
    assert [count(manager, p) for p in proxies] == [2, 2, 2]
    assert sorted(lease.proxy_id for lease in got) == sorted([p.id for p in proxies] * 2)
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)


def _lose_replies(manager: Any, script: str, times: int) -> list[str]:
    """Make the storage lose the reply to the first ``times`` batches running ``script``
    (the batch is executed, then a connection error is raised, as when a link drops)."""
    storage = manager.target.storage if is_async(manager) else manager.storage
    original = storage.executor.execute
    lost: list[str] = []

    def runs_script(batch: Batch) -> bool:
        return any(isinstance(c, ScriptCall) and c.name == script for c in batch.calls)

    def lose(batch: Batch) -> None:
        if runs_script(batch) and len(lost) < times:
            lost.append(script)
            raise RedisStorageError("reply lost") from redis.ConnectionError("connection reset")

    if is_async(manager):

        async def execute_async(batch: Batch) -> list[Any]:
            replies: list[Any] = await original(batch)
            lose(batch)
            return replies

        storage.executor.execute = execute_async
    else:

        def execute(batch: Batch) -> list[Any]:
            replies: list[Any] = original(batch)
            lose(batch)
            return replies

        storage.executor.execute = execute
    return lost


def test_a_lost_reply_is_sent_again_and_makes_one_lease(manager: Any) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=None)
    lost = _lose_replies(manager, "acquire", times=2)
    leased = manager.acquire(pool.name, consumer_name="flaky")
    assert lost == ["acquire", "acquire"]  # two replies lost, the third one arrived
    assert leased is not None and leased.proxy.current_leases == 1
    assert count(manager, proxy) == 1
    assert [lease.id for lease in manager.storage.list_leases()] == [leased.lease.id]
    lost = _lose_replies(manager, "release", times=1)
    manager.release_proxy(leased)
    assert lost == ["release"] and leased.lease.released_at is not None
    assert count(manager, proxy) == 0
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)


def test_a_pool_replaced_under_the_same_name_is_found(manager: Any, other: RedisStorage) -> None:
    pool, _ = seed(manager)
    manager.release_proxy(manager.acquire_proxy(pool.name))  # the manager knows the pool's id
    other.delete_pool(str(pool.id))
    replacement = ProxyPool(name=pool.name)
    other.save_pool(replacement)
    new_proxy = make_proxy(replacement, 9)
    other.save_proxy(new_proxy)
    lease = manager.acquire_proxy(pool.name)
    assert lease is not None
    assert lease.pool_id == replacement.id and lease.proxy_id == new_proxy.id
    assert other.get_proxy(str(new_proxy.id)).current_leases == 1


def test_a_lease_of_a_deleted_pool_is_lost(manager: Any, other: RedisStorage) -> None:
    pool, _ = seed(manager)
    released: list[ReleaseEventPayload] = []
    manager.register_release_callback(released.append)
    lease = manager.acquire_proxy(pool.name)
    other.delete_pool(str(pool.id))
    with pytest.raises(LeaseLostError):
        manager.renew_lease(lease, 60)
    manager.release_proxy(lease)  # nothing to release: no error
    (payload,) = released
    assert payload.lease.id == lease.id and payload.pool_stats is None
    assert manager.acquire_proxy(pool.name) is None
