"""What each manager operation costs, counted on both ends of the wire.

Client side, :class:`~tests.helpers.Recorder` counts the batches a storage executes (one
batch = one round trip). Server side, a :class:`Meter` on a private redis-server counts what
the server ran: ``INFO commandstats`` after ``CONFIG RESETSTAT``, and ``MONITOR`` to tell the
commands clients sent apart from the ones the Lua scripts ran inside them (commandstats
counts both: an acquire's two EVALSHA show up next to a dozen HGET, ZADD, ... run by
``acquire.lua``). Every measurement checks that the two agree: commandstats, less the meter's
own CONFIG RESETSTAT and ECHO, equals the sent commands plus the script commands exactly.

Counts observed (redis-server 7.0, redis-py 8):

* RedisProxyManager / AsyncRedisProxyManager, warm caches: acquire 1 round trip, the server
  receives one EVALSHA acquire and nothing else (a process's first acquire in a pool also
  pipelines EVALSHA schedule for the cleanup index), for every
  selector, with or without an equality filter, with or without callbacks; release 1 round
  trip, EVALSHA release.
* Cold caches (a new storage): +1 round trip per unknown consumer name (MULTI, HSETNX, HGET,
  EXEC) and +1 per unknown pool name (HGET); an unknown pool costs that HGET on every call.
* Python predicate: 1 round trip for the scan + 1 per compare-and-lease attempt.
* pharox's stock ProxyManager on RedisStorage: acquire 4 round trips (EVALSHA due, EVALSHA
  find, EVALSHA lease + EVALSHA schedule, HMGET stats), release 2 (EVALSHA release, HMGET),
  cleanup with nothing expired 1 (EVALSHA due).
* After SCRIPT FLUSH the first acquire is still one batch for the Recorder, but the server
  sees the pipeline twice: NOSCRIPT, then each script call again inside MULTI with a
  SCRIPT LOAD of its script.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
import redis
from pharox import (
    AcquireEventPayload,
    Lease,
    PoolStatsSnapshot,
    ProxyFilters,
    ProxyManager,
    ProxyPool,
    ReleaseEventPayload,
    SelectorStrategy,
)

import pharox_redis.codec
import pharox_redis.flows
from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.operations.batch import Batch
from pharox_redis.scripts import lua_dir, sources
from pharox_redis.server import RedisServer

from .helpers import Recorder, make_pool, make_proxy

pytestmark = pytest.mark.real_redis

# Subcommand containers: commandstats names their commands "client|setinfo", "script|load".
_CONTAINERS = {"client", "config", "script", "function", "object", "memory", "acl", "command"}
STATS_FIELDS = (
    "pool_name",
    "total_proxies",
    "active_proxies",
    "available_proxies",
    "leased_proxies",
    "total_leases",
)


# EVALSHA's first argument -> script name (the SHA1 of the source, the same for every storage).
SHAS = {source.sha: name for name, source in sources().items()}
# Every command any script may run (all calls in lua/ are literal redis.call('NAME', ...)).
SCRIPT_VOCABULARY = {
    name.lower()
    for path in lua_dir().glob("*.lua")
    for name in re.findall(r"redis\.p?call\('([A-Za-z]+)'", path.read_text(encoding="utf-8"))
}


def _command_type(tokens: list[str]) -> str:
    name = tokens[0].lower()
    if name in _CONTAINERS and len(tokens) > 1:
        return f"{name}|{tokens[1].lower()}"
    return name


@dataclass
class Seen:
    """What the server ran during one measurement."""

    sent: list[str] = field(default_factory=list)  # commands clients sent, EVALSHA by script
    in_scripts: Counter[str] = field(default_factory=Counter)  # commands the scripts ran
    stats: Counter[str] = field(default_factory=Counter)  # INFO commandstats, meter's removed


class Meter:
    """Count the commands a private redis-server runs while a block executes.

    Nothing but the measured code may talk to the server during the block. The meter's own
    commands are left out: CONFIG RESETSTAT (counted by commandstats, never shown by
    MONITOR) and the ECHO that marks the end of the block in the MONITOR stream.
    """

    def __init__(self, server: RedisServer) -> None:
        self.stats_client = redis.Redis.from_url(server.url)
        self.monitor_client = redis.Redis.from_url(server.url)
        self.stats_client.ping()  # connect now: no handshake inside a measurement
        self.load_scripts()

    def load_scripts(self) -> None:
        """Load every script, so no measurement depends on which test ran first."""
        for source in sources().values():
            self.stats_client.script_load(source.text)

    def close(self) -> None:
        self.stats_client.close()
        self.monitor_client.close()

    @contextmanager
    def measure(self) -> Iterator[Seen]:
        seen = Seen()
        with self.monitor_client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self.stats_client.config_resetstat()  # CONFIG is never shown by MONITOR
            yield seen
            token = uuid.uuid4().hex
            self.stats_client.echo(token)
            while True:
                entry = monitor.next_command()
                tokens = entry["command"].split(" ")
                if tokens == ["ECHO", token]:
                    break
                if entry["client_type"] == "lua":
                    seen.in_scripts[_command_type(tokens)] += 1
                elif tokens[0].upper() == "EVALSHA":
                    seen.sent.append(f"EVALSHA {SHAS.get(tokens[1], tokens[1])}")
                else:
                    size = 2 if tokens[0].lower() in _CONTAINERS else 1
                    seen.sent.append(" ".join(t.upper() for t in tokens[:size]))
        raw = self.stats_client.info("commandstats")
        stats = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()})
        stats.subtract({"config|resetstat": 1, "echo": 1})  # the meter's own
        assert all(n >= 0 for n in stats.values()), stats
        seen.stats = +stats
        # Full accounting: the server ran exactly what was sent plus what the scripts ran.
        sent = Counter(_command_type(label.split(" ")) for label in seen.sent)
        assert seen.stats == sent + seen.in_scripts, (seen.stats, sent, seen.in_scripts)
        assert set(seen.in_scripts) <= SCRIPT_VOCABULARY, seen.in_scripts


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def meter(server: RedisServer) -> Iterator[Meter]:
    m = Meter(server)
    yield m
    m.close()


@pytest.fixture
def prefix() -> str:
    return f"rt{uuid.uuid4().hex[:10]}"


@pytest.fixture
def storages(server: RedisServer, prefix: str) -> Iterator[list[RedisStorage]]:
    """Make storages on the module's server under this test's prefix; closes them."""
    made: list[RedisStorage] = []
    yield made
    for s in made:
        s.client.close()


@pytest.fixture
def storage(server: RedisServer, prefix: str, storages: list[RedisStorage]) -> RedisStorage:
    return new_storage(server, prefix, storages)


def new_storage(server: RedisServer, prefix: str, made: list[RedisStorage]) -> RedisStorage:
    """A storage with empty caches (as in a new process), already connected."""
    s = RedisStorage.from_url(server.url, prefix=prefix)
    s.client.ping()
    made.append(s)
    return s


def seed(storage: RedisStorage, name: str = "pool", size: int = 6, **fields: Any) -> ProxyPool:
    """A pool of ``size`` proxies, alternately in the US and in AR (US first in any order)."""
    pool = make_pool(storage, name)
    fields.setdefault("max_concurrency", None)
    storage.add_proxies_bulk(
        [
            make_proxy(pool, n, country="US" if n % 2 == 0 else "AR", latency_ms=10 + n, **fields)
            for n in range(size)
        ]
    )
    return pool


def stats_fields(stats: Optional[PoolStatsSnapshot]) -> dict[str, Any]:
    assert stats is not None
    return {k: getattr(stats, k) for k in STATS_FIELDS}


def script_names(batches: list[Batch]) -> list[list[str]]:
    return [[getattr(c, "name", "command") for c in b.calls] for b in batches]


ACQUIRE = ["EVALSHA acquire"]  # the pool's cleanup entry already covers the lease
FIRST_ACQUIRE = ["EVALSHA acquire", "EVALSHA schedule"]  # a process's first in a pool
RELEASE = ["EVALSHA release"]
SELECTORS = pytest.mark.parametrize("selector", list(SelectorStrategy), ids=lambda s: s.value)


# ---------------------------------------------------------------------- RedisProxyManager


@SELECTORS
@pytest.mark.parametrize("country", [None, "AR"], ids=["no-filter", "eq-filter"])
@pytest.mark.parametrize("method", ["acquire_proxy", "acquire"])
def test_acquire_is_one_round_trip_of_one_evalsha(
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
    assert seen.stats["evalsha"] == 1
    assert set(seen.stats) - set(seen.in_scripts) == {"evalsha"}  # nothing else was sent
    lease = got.lease if isinstance(got, LeasedProxy) else got
    assert isinstance(lease, Lease) and lease.pool_id == pool.id
    if method == "acquire":
        assert got.proxy.id == lease.proxy_id  # the proxy as leased, its count included
        assert got.proxy.current_leases == storage.get_proxy(str(lease.proxy_id)).current_leases
    if country:
        assert storage.get_proxy(str(lease.proxy_id)).country == country


def test_release_is_one_round_trip_of_one_evalsha(storage: RedisStorage, meter: Meter) -> None:
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
        assert seen.sent == RELEASE and seen.stats["evalsha"] == 1
        assert set(seen.stats) - set(seen.in_scripts) == {"evalsha"}
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
    server: RedisServer, prefix: str, storages: list[RedisStorage], meter: Meter
) -> None:
    warm = new_storage(server, prefix, storages)
    first, second = seed(warm, "first"), seed(warm, "second")
    RedisProxyManager(warm).acquire_proxy(first.name, "x")  # the scripts are loaded
    cold = new_storage(server, prefix, storages)
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
    other = RedisProxyManager(new_storage(server, prefix, storages))
    recorder = Recorder(other.storage)
    with meter.measure() as seen:
        other.release_proxy(lease)  # type: ignore[arg-type]
    assert len(recorder.batches) == 1 and seen.sent == RELEASE


def test_predicate_costs_one_round_trip_per_compare_and_lease(
    server: RedisServer, prefix: str, storages: list[RedisStorage], meter: Meter
) -> None:
    storage = new_storage(server, prefix, storages)
    thief = new_storage(server, prefix, storages)
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
    assert seen.sent == [*ACQUIRE, "EVALSHA lease", "EVALSHA schedule"]

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


# ---------------------------------------------------------------------- stock ProxyManager


@pytest.mark.parametrize("consumer", ["w", None], ids=["named", "default"])
def test_stock_manager_round_trips(
    storage: RedisStorage, meter: Meter, consumer: Optional[str]
) -> None:
    pool = seed(storage)
    manager = ProxyManager(storage)
    manager.acquire_proxy(pool.name, consumer, 60)  # warm-up
    recorder = Recorder(storage)
    with meter.measure() as seen:
        lease = manager.acquire_proxy(pool.name, consumer, 60)
    assert lease is not None
    assert len(recorder.batches) == 4  # cleanup, find, create (+ hint), stats
    assert seen.sent == [
        "EVALSHA due",
        "EVALSHA find",
        "EVALSHA lease",
        "EVALSHA schedule",
        "HMGET",
    ]
    recorder.reset()
    with meter.measure() as seen:
        manager.release_proxy(lease)
    assert len(recorder.batches) == 2
    assert seen.sent == ["EVALSHA release", "HMGET"]
    recorder.reset()
    with meter.measure() as seen:
        assert manager.cleanup_expired_leases() == 0
    assert len(recorder.batches) == 1 and len(recorder.calls) == 1
    assert seen.sent == ["EVALSHA due"]


@SELECTORS
def test_stock_manager_acquire_is_at_most_four_round_trips(
    storage: RedisStorage, selector: Any
) -> None:
    pool = seed(storage)
    manager = ProxyManager(storage)
    manager.acquire_proxy(pool.name, "w", 60, selector=selector)
    recorder = Recorder(storage)
    for _ in range(3):
        recorder.reset()
        assert manager.acquire_proxy(pool.name, "w", 60, selector=selector) is not None
        assert len(recorder.batches) <= 4


def test_first_acquire_after_script_flush(storage: RedisStorage, meter: Meter) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    manager.acquire_proxy(pool.name, "w", 60)  # warm-up
    meter.stats_client.script_flush()
    recorder = Recorder(storage)
    try:
        with meter.measure() as seen:
            assert manager.acquire_proxy(pool.name, "w", 60) is not None
    finally:
        meter.load_scripts()
    # One batch for the Recorder, two round trips on the wire: the pipeline answered
    # NOSCRIPT, then went again with each script loaded in one transaction with its call,
    # so no SCRIPT FLUSH can land between the load and the call.
    assert len(recorder.batches) == 1
    assert seen.sent == [*ACQUIRE, "MULTI", "SCRIPT LOAD", *ACQUIRE, "EXEC"]
    recorder.reset()
    with meter.measure() as seen:
        assert manager.acquire_proxy(pool.name, "w", 60) is not None
    assert seen.sent == ACQUIRE


# ---------------------------------------------------------------------- asyncio


def test_async_manager_acquire_and_release_are_one_round_trip(
    server: RedisServer, prefix: str, storage: RedisStorage, meter: Meter
) -> None:
    pool = seed(storage)
    loop = asyncio.new_event_loop()
    astorage = AsyncRedisStorage.from_url(server.url, prefix=prefix)
    try:
        manager = AsyncRedisProxyManager(astorage)
        run = loop.run_until_complete
        assert run(manager.acquire_proxy(pool.name, "w", 60)) is not None  # warm-up
        recorder = Recorder(astorage)
        for selector in SelectorStrategy:
            recorder.batches.clear()
            with meter.measure() as seen:
                leased = run(manager.acquire(pool.name, "w", 60, selector=selector))
            assert leased is not None
            assert len(recorder.batches) == 1 and seen.sent == ACQUIRE
            assert set(seen.stats) - set(seen.in_scripts) == {"evalsha"}
            recorder.batches.clear()
            with meter.measure() as seen:
                run(manager.release_proxy(leased))
            assert len(recorder.batches) == 1 and seen.sent == RELEASE

        # With callbacks (plain and coroutine): still one round trip each.
        acquired: list[AcquireEventPayload] = []
        released: list[ReleaseEventPayload] = []

        async def on_release(payload: ReleaseEventPayload) -> None:
            released.append(payload)

        manager.register_acquire_callback(acquired.append)
        manager.register_release_callback(on_release)
        recorder.batches.clear()
        with meter.measure() as seen:
            lease = run(manager.acquire_proxy(pool.name, "w", 60))
        assert lease is not None and len(recorder.batches) == 1 and seen.sent == ACQUIRE
        assert stats_fields(acquired[-1].pool_stats) == stats_fields(
            storage.get_pool_stats(pool.name)
        )
        recorder.batches.clear()
        with meter.measure() as seen:
            run(manager.release_proxy(lease))
        assert len(recorder.batches) == 1 and seen.sent == RELEASE
        assert stats_fields(released[-1].pool_stats) == stats_fields(
            storage.get_pool_stats(pool.name)
        )
        assert stats_fields(released[-1].pool_stats)["total_leases"] == 1  # the warm-up's
    finally:
        loop.run_until_complete(astorage.aclose())
        loop.close()


# ---------------------------------------------------------------------- nothing built


class Built(AssertionError):
    """Raised by the stand-ins: something was built for a callback nobody registered."""


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise Built("built without a callback")


@pytest.fixture
def nothing_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pharox_redis.flows, "acquire_payload", _boom)
    monkeypatch.setattr(pharox_redis.flows, "release_payload", _boom)
    monkeypatch.setattr(pharox_redis.codec, "stats_snapshot", _boom)
    # Not even the start time of an acquire is taken.
    monkeypatch.setattr(pharox_redis.flows, "now_utc", _boom)


@pytest.mark.usefixtures("nothing_built")
def test_without_callbacks_no_payload_is_built(server: RedisServer, storage: RedisStorage) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    manager.release_proxy(manager.acquire(pool.name, "w", 60))  # type: ignore[arg-type]
    recorder = Recorder(storage)
    leased = manager.acquire(pool.name, "w", 60)
    assert leased is not None and len(recorder.batches) == 1
    recorder.reset()
    manager.release_proxy(leased)
    assert leased.lease.released_at is not None and len(recorder.batches) == 1

    async def main() -> None:
        astorage = AsyncRedisStorage.from_url(server.url, prefix=storage.context.keys.prefix)
        try:
            amanager = AsyncRedisProxyManager(astorage)
            aleased = await amanager.acquire(pool.name, "w", 60)
            assert aleased is not None
            await amanager.release_proxy(aleased)
            assert aleased.lease.released_at is not None
        finally:
            await astorage.aclose()

    asyncio.run(main())
    # The stand-ins are live: a registered callback does reach them.
    manager.register_acquire_callback(lambda payload: None)
    with pytest.raises(Built):
        manager.acquire(pool.name, "w", 60)


def test_acquire_resends_with_schedule_when_cleanup_dropped_the_pool(
    storage: RedisStorage, meter: Meter
) -> None:
    """Once cleanup drops an idle pool from its index, the next acquire schedules it again.

    The acquire goes out alone (this process's last one was covered); ``acquire.lua`` sees
    that the pool's entry is gone, changes nothing and answers 'schedule'; the acquire is
    sent again with ``schedule.lua``, and the one after that is a single EVALSHA again.
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
