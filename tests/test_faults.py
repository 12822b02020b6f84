"""Fault tolerance: what happens to leases when workers, Redis or the network misbehave.

Every test starts its own ``redis-server`` (:class:`~pharox_redis.server.RedisServer`, on
loopback only), injects one fault, checks what the library promises under it, and ends
with an audit of the whole keyspace (``storage.audit()``) that must find no drift.

The faults:

* **Workers killed while holding leases.** Eight ``spawn`` processes lease from one pool;
  three take a 2 s lease each and are killed with SIGKILL. The five survivors keep being
  granted leases, and the dead workers' proxies are free again only once their leases
  have expired on the server's clock, not earlier, and promptly after.
* **Redis restarted mid-run.** With AOF (``appendfsync always``) and SIGKILL: clients from
  ``RedisStorage.from_url`` reconnect by themselves (redis-py's ``Retry``), reload the
  scripts the new server does not know (the NOSCRIPT path), grant no proxy twice, and
  every lease granted before the restart is still there after it. Without persistence the
  pool is gone, and the client says so in pharox's terms (``None`` from an acquire, as
  for any unknown pool, ``PoolNotFoundError``, ``LeaseLostError``), never with a raw
  Redis error.
* **SCRIPT FLUSH, again and again, from another client** while threads (sync and asyncio)
  acquire and release: every script call that meets NOSCRIPT reloads and is re-sent, and
  no acquire or release fails.
* **The reply of an acquire (or a release) is lost** after the server ran it: the
  connection is cut by a relay (``tests/relay.py``). Whoever re-sends it (redis-py's
  ``Retry`` or the manager's ``retries``), the same lease comes back and no orphan lease
  is left: the audit counts exactly the leases the caller holds.
* **Redis unreachable**: stopped (connection refused), stalled (a relay that accepts and
  never answers) or a port nobody listens on. Acquire and release raise
  ``RedisStorageError`` within the bound the retry policy sets over the configured socket
  timeout, never hang; pharox's retry helpers on top surface that error, and when Redis
  comes back within the retry window the call succeeds.
* **Client clocks off by an hour** (``time.time`` and ``datetime.now`` patched in every
  loaded pharox and redis module): leases are stamped and expired by the Redis server's
  clock, so a 2 s lease still lasts 2 s.
* **Memory over 100,000 acquire/release cycles** with ``lease_retention_seconds=1``:
  released lease records are purged once retained for a second, so memory stays flat and
  returns to its baseline once the retention has passed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_module
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest
import redis
from pharox import (
    Lease,
    LeaseStatus,
    PoolNotFoundError,
    Proxy,
    ProxyFilters,
    ProxyManager,
    ProxyNotFoundError,
    ProxyPool,
    SelectorStrategy,
)
from redis.backoff import NoBackoff
from redis.retry import Retry

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeaseLostError,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
    flows,
)
from pharox_redis.codec import text
from pharox_redis.executor import RAW
from pharox_redis.flows import RETRY_BASE_SECONDS
from pharox_redis.operations import acquire, leases
from pharox_redis.operations.batch import Op
from pharox_redis.scripts import sources
from pharox_redis.server import RedisServer, free_port

from .helpers import workers as fault_workers
from .helpers import make_pool, make_proxy
from .helpers.relay import Relay
from .test_multiprocess import max_overlap

pytestmark = pytest.mark.real_redis

RETENTION = 3600.0  # no released lease record may be purged before a test reads it back
SELECTORS = tuple(SelectorStrategy)
FAR_FUTURE = datetime.max.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------- shared helpers


@pytest.fixture
def opened() -> Iterator[list[RedisStorage]]:
    """Storages a test opens; their connections are closed at teardown."""
    made: list[RedisStorage] = []
    yield made
    for storage in made:
        storage.client.close()


def connect(url: str, opened: list[RedisStorage], **options: Any) -> RedisStorage:
    """A storage as ``from_url`` builds it (default retry policy), closed at teardown."""
    options.setdefault("prefix", "faults")
    options.setdefault("lease_retention_seconds", RETENTION)
    storage = RedisStorage.from_url(url, **options)
    opened.append(storage)
    return storage


def seed(storage: RedisStorage, proxies: int, max_concurrency: Optional[int]) -> ProxyPool:
    """Save a pool named ``pool`` with ``proxies`` proxies."""
    pool = make_pool(storage)
    storage.add_proxies_bulk(
        [make_proxy(pool, i, max_concurrency=max_concurrency) for i in range(proxies)]
    )
    return pool


def server_now(storage: RedisStorage) -> datetime:
    """The Redis server's clock (``TIME``), which stamps every lease."""
    seconds, micros = storage.client.time()
    return datetime.fromtimestamp(seconds, timezone.utc) + timedelta(microseconds=micros)


def sleep_until(storage: RedisStorage, moment: datetime) -> None:
    """Sleep until the server's clock has passed ``moment``."""
    while (left := (moment - server_now(storage)).total_seconds()) > 0:
        time.sleep(min(left, 0.5) + 0.001)


def peak_per_proxy(leases: Iterable[Lease]) -> dict[str, int]:
    """The most leases each proxy held at one moment, from the stored records.

    A released lease is held over ``[acquired_at, released_at)`` on the server's clock; an
    active one from ``acquired_at`` on.
    """
    intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for lease in leases:
        end = lease.released_at if lease.released_at is not None else FAR_FUTURE
        intervals[str(lease.proxy_id)].append((lease.acquired_at, end))
    return {proxy: max_overlap(spans) for proxy, spans in intervals.items()}


def error_name(exc: BaseException) -> str:
    """``RedisStorageError(ConnectionError)``: the error and, when wrapped, its cause."""
    cause = exc.__cause__
    return type(exc).__name__ + (f"({type(cause).__name__})" if cause is not None else "")


@dataclass
class LoopReport:
    """What one leasing thread saw."""

    name: str
    granted: list[tuple[str, str]] = field(default_factory=list)  # (lease id, proxy id)
    none: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)
    failed_ids: list[str] = field(default_factory=list)  # acquires that raised: maybe made
    unreleased: list[Lease] = field(default_factory=list)  # releases that raised

    def error(self, exc: BaseException) -> None:
        name = error_name(exc)
        self.errors[name] += 1
        self.messages.setdefault(name, repr(exc)[:300])


def lease_loop(
    manager: RedisProxyManager,
    report: LoopReport,
    stop: threading.Event,
    duration: float,
    filters: Optional[ProxyFilters] = None,
) -> None:
    """Acquire (every selector in turn), release, until ``stop``; record all in ``report``."""
    n = 0
    while not stop.is_set():
        selector = SELECTORS[n % len(SELECTORS)]
        n += 1
        try:
            leased = manager.acquire("pool", report.name, duration, filters, selector)
        except Exception as exc:
            report.error(exc)
            if isinstance(exc, RedisStorageError) and exc.lease_id is not None:
                report.failed_ids.append(str(exc.lease_id))
            continue
        if leased is None:
            report.none += 1
            time.sleep(0.0005)
            continue
        report.granted.append((str(leased.lease.id), str(leased.proxy.id)))
        try:
            manager.release_proxy(leased)
        except Exception as exc:
            report.error(exc)
            report.unreleased.append(leased.lease)


def run_threads(targets: Sequence[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: Sequence[threading.Thread], timeout: float = 60.0) -> None:
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread is still running"


def cmdstat(storage: RedisStorage, command: str) -> dict[str, Any]:
    """``INFO commandstats`` of one command (``script|load``, ``evalsha``), or {}."""
    stats: dict[str, Any] = storage.client.info("commandstats")
    return dict(stats.get(f"cmdstat_{command}", {}))


# ---------------------------------------------------------------------- killed workers

KILL_WORKERS = 8
VICTIMS = 3
KILL_PROXIES = 6
KILL_LEASE_SECONDS = 2.0
SURVIVOR_SECONDS = 4.5  # victims lease at ~0 s, their leases expire at ~2 s


@pytest.mark.slow
def test_killed_workers_leases_come_back_after_their_duration(opened: list[RedisStorage]) -> None:
    """SIGKILL three of eight processes while they hold leases.

    Survivors keep being granted leases; the dead leases stay active until their
    ``expires_at``, no proxy of theirs is leased again before that (server clock), and
    each comes back within a second after it.
    """
    started = time.monotonic()
    with RedisServer() as server:
        storage = connect(server.url, opened, prefix="kill")
        pool = seed(storage, KILL_PROXIES, max_concurrency=1)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(KILL_WORKERS + 1)
        results = ctx.Queue()
        survivors = [
            ctx.Process(
                target=fault_workers.survivor,
                name=f"survivor-{i}",
                args=(
                    i,
                    server.url,
                    "kill",
                    RETENTION,
                    pool.name,
                    KILL_LEASE_SECONDS,
                    SURVIVOR_SECONDS,
                    barrier,
                    results,
                ),
            )
            for i in range(KILL_WORKERS - VICTIMS)
        ]
        victims = [
            ctx.Process(
                target=fault_workers.victim,
                name=f"victim-{i}",
                args=(i, server.url, "kill", RETENTION, pool.name, KILL_LEASE_SECONDS, barrier),
            )
            for i in range(VICTIMS)
        ]
        reports: list[dict[str, Any]] = []
        try:
            for proc in survivors + victims:
                proc.start()
            barrier.wait(timeout=fault_workers.START_TIMEOUT)
            victim_ids = {storage.ensure_consumer(f"victim-{i}") for i in range(VICTIMS)}
            deadline = time.monotonic() + 30
            while True:
                held = [x for x in storage.list_leases() if x.consumer_id in victim_ids]
                if len(held) == VICTIMS or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert len(held) == VICTIMS, f"victims hold {held}"
            for proc in victims:
                proc.kill()  # SIGKILL: no release, no cleanup, no goodbye
            for proc in victims:
                proc.join(timeout=10)
            killed_at = server_now(storage)
            assert [p.exitcode for p in victims] == [-signal.SIGKILL] * VICTIMS

            # Right after the kill the dead leases are still active and counted.
            assert killed_at < min(x.expires_at for x in held), "the check came too late"
            for lease in held:
                stored = storage.get_lease(str(lease.id))
                assert stored is not None and stored.status is LeaseStatus.ACTIVE
            stats = storage.get_pool_stats(pool.name)
            assert stats is not None and stats.leased_proxies >= VICTIMS, stats

            deadline = time.monotonic() + SURVIVOR_SECONDS + 60
            while len(reports) < len(survivors):
                try:
                    reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
                except queue_module.Empty:
                    codes = {p.name: p.exitcode for p in survivors}
                    pytest.fail(f"{len(reports)} of {len(survivors)} survivors reported: {codes}")
            for proc in survivors:
                proc.join(timeout=10)
            assert [p.exitcode for p in survivors] == [0] * len(survivors)
        finally:
            for proc in survivors + victims:
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
            results.close()
            results.join_thread()

        leases = {str(x.id): x for x in storage.list_leases()}
        dead = [leases[str(x.id)] for x in held]
        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r["errors"])
        reported = [pair for r in reports for pair in r["leases"]]
        by_proxy: dict[str, list[Lease]] = defaultdict(list)
        for lease in leases.values():
            by_proxy[str(lease.proxy_id)].append(lease)
        peaks = peak_per_proxy(leases.values())
        comeback = {
            str(d.proxy_id): min(
                (x.acquired_at - d.expires_at).total_seconds()
                for x in by_proxy[str(d.proxy_id)]
                if x.acquired_at >= d.expires_at
            )
            for d in dead
            if any(x.acquired_at >= d.expires_at for x in by_proxy[str(d.proxy_id)])
        }
        after_kill = [
            sum(leases[lid].acquired_at > killed_at for lid, _ in r["leases"]) for r in reports
        ]
        print(
            f"\nkill: survivors granted={len(reported)} none={sum(r['none'] for r in reports)} "
            f"errors={dict(errors)} granted after the kill per survivor={after_kill} "
            f"peak per proxy={sorted(peaks.values())} dead leases came back after "
            f"{[round(s, 3) for s in comeback.values()]} s "
            f"elapsed={time.monotonic() - started:.1f}s"
        )

        assert not errors, [r["messages"] for r in reports]
        assert all(n > 0 for n in after_kill), (
            f"a survivor got nothing after the kill: {after_kill}"
        )
        assert set(leases) == {lid for lid, _ in reported} | {str(d.id) for d in dead}
        assert all(peak <= 1 for peak in peaks.values()), peaks
        for d in dead:
            assert d.expires_at - d.acquired_at == timedelta(seconds=KILL_LEASE_SECONDS)
            # reclaimed by a survivor's acquire, never before it expired
            assert d.status is LeaseStatus.RELEASED and d.released_at is not None, d
            assert d.released_at >= d.expires_at, d
            early = [
                x
                for x in by_proxy[str(d.proxy_id)]
                if x.id != d.id
                and x.acquired_at < d.expires_at
                and x.released_at is not None
                and x.released_at > d.acquired_at
            ]
            assert not early, f"{d.proxy_id} leased again before {d.expires_at}: {early[:2]}"
        assert set(comeback) == {str(d.proxy_id) for d in dead}, "a dead lease never came back"
        assert max(comeback.values()) < 1.0, comeback

        stats = storage.get_pool_stats(pool.name)
        assert stats is not None and (stats.total_leases, stats.leased_proxies) == (0, 0), stats
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


# ---------------------------------------------------------------------- Redis restarted

RESTART_PROXIES = 5
RESTART_THREADS = 4
HELD_ACROSS = 2  # leases taken before the restart and held across it
RESTART_AFTER = 0.8
RUN_AFTER_RESTART = 1.5
# How long redis-py's Retry (4 attempts, 0.04 + 0.08 + 0.16 s apart) times the manager's
# 3 attempts keep an acquire alive against a refused connection: about 1 s.
RETRY_WINDOW = 0.9


@pytest.mark.slow
def test_restart_with_aof_loses_nothing_and_clients_reconnect(opened: list[RedisStorage]) -> None:
    """SIGKILL Redis mid-run and start it again on its AOF (``appendfsync always``).

    The leasing threads' clients reconnect by themselves, reload the scripts (NOSCRIPT)
    and are granted leases again; no proxy was ever held twice; every lease granted
    before the restart, whether released or still held, is still stored after it.
    """
    started = time.monotonic()
    with RedisServer(tcp=True, appendonly=True) as server:
        direct = connect(server.url, opened)
        pool = seed(direct, RESTART_PROXIES, max_concurrency=1)
        holder = RedisProxyManager(connect(server.url, opened))
        held = [holder.acquire_proxy(pool.name, "holder", 60) for _ in range(HELD_ACROSS)]
        assert all(x is not None for x in held)
        held_leases = [x for x in held if x is not None]

        stop = threading.Event()
        reports = [LoopReport(f"restart-{i}") for i in range(RESTART_THREADS)]
        managers = [RedisProxyManager(connect(server.url, opened)) for _ in reports]
        threads = run_threads(
            [
                lambda m=m, r=r: lease_loop(m, r, stop, duration=30)
                for m, r in zip(managers, reports, strict=True)
            ]
        )
        try:
            time.sleep(RESTART_AFTER)
            before = sum(len(r.granted) for r in reports)
            restart_began = time.monotonic()
            server.restart(kill=True)
            restart_seconds = time.monotonic() - restart_began
            restarted_at = server_now(direct)
            time.sleep(RUN_AFTER_RESTART)
        finally:
            stop.set()
            join_all(threads)
        reloads = cmdstat(direct, "script|load").get("calls", 0)
        evalsha = cmdstat(direct, "evalsha")

        for r in reports:  # a release that failed leaves its lease to expire: release it now
            for lease in r.unreleased:
                holder.release_proxy(lease)
        leases = {str(x.id): x for x in direct.list_leases()}
        granted = {lid for r in reports for lid, _ in r.granted}
        failed = {lid for r in reports for lid in r.failed_ids}
        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r.errors)
        peaks = peak_per_proxy(leases.values())
        after = [
            sum(leases[lid].acquired_at > restarted_at for lid, _ in r.granted) for r in reports
        ]
        print(
            f"\nrestart: granted={len(granted)} ({before} before the restart) "
            f"after per thread={after} none={sum(r.none for r in reports)} "
            f"errors={dict(errors)} restart took {restart_seconds:.3f}s "
            f"script loads={reloads} evalsha={evalsha} peak per proxy={sorted(peaks.values())} "
            f"elapsed={time.monotonic() - started:.1f}s"
        )

        if restart_seconds < RETRY_WINDOW:
            assert not errors, [r.messages for r in reports]
        else:  # a restart slower than the retry window may fail calls, only as outages
            assert set(errors) <= {"RedisStorageError(ConnectionError)"}, errors
        assert before > 0 and all(n > 0 for n in after), (before, after)
        assert reloads >= 1, "no client reloaded the scripts after the restart"
        assert granted <= set(leases), f"granted but lost: {sorted(granted - set(leases))[:3]}"
        assert set(leases) - granted - failed == {str(x.id) for x in held_leases}
        assert all(peak <= 1 for peak in peaks.values()), peaks
        for lease in held_leases:
            stored = leases[str(lease.id)]
            assert stored.status is LeaseStatus.ACTIVE
            assert (stored.acquired_at, stored.expires_at) == (lease.acquired_at, lease.expires_at)
        stats = direct.get_pool_stats(pool.name)
        assert stats is not None and stats.total_leases == HELD_ACROSS, stats
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == HELD_ACROSS, report
        for lease in held_leases:
            holder.release_proxy(lease)
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


def test_restart_without_persistence_loses_the_pool_with_pharox_errors(
    opened: list[RedisStorage],
) -> None:
    """Without AOF a restart loses everything; calls answer as for a pool never saved.

    An acquire returns None (pharox's answer for an unknown pool), pool and proxy reads
    raise ``PoolNotFoundError`` / ``ProxyNotFoundError``, renewing a lease held before
    raises ``LeaseLostError`` and releasing it is a no-op: never a raw Redis error. Saving
    the pool again brings leasing back.
    """
    with RedisServer(tcp=True) as server:
        storage = connect(server.url, opened)
        manager = RedisProxyManager(storage)
        pool = seed(storage, 1, max_concurrency=1)
        (proxy,) = storage.list_proxies(str(pool.id))
        lease = manager.acquire_proxy(pool.name, "w", 60)
        assert lease is not None

        server.restart(kill=True)

        assert manager.acquire_proxy(pool.name, "w", 60) is None
        assert (
            manager.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=2, backoff_seconds=0)
            is None
        )
        assert ProxyManager(storage).acquire_proxy(pool.name, "w", 60) is None
        assert storage.get_pool_stats(pool.name) is None
        assert storage.list_pools() == []
        assert storage.list_leases() == []
        assert storage.get_lease(str(lease.id)) is None
        with pytest.raises(PoolNotFoundError):
            storage.get_pool(str(pool.id))
        with pytest.raises(PoolNotFoundError):
            storage.list_proxies(str(pool.id))
        with pytest.raises(PoolNotFoundError):
            storage.save_proxy(proxy)
        with pytest.raises(ProxyNotFoundError):
            storage.get_proxy(str(proxy.id))
        with pytest.raises(LeaseLostError):
            manager.renew_lease(lease, 60)
        manager.release_proxy(lease)  # nothing to release: a no-op
        report = storage.audit()
        assert report.drift == ()
        assert (report.pools, report.proxies, report.active_leases) == (0, 0, 0), report

        storage.save_pool(pool)
        proxy.current_leases = 0
        storage.save_proxy(proxy)
        again = manager.acquire_proxy(pool.name, "w", 60)
        assert again is not None and again.proxy_id == proxy.id
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 1, report
        manager.release_proxy(again)
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


# ---------------------------------------------------------------------- SCRIPT FLUSH

FLUSH_SECONDS = 2.5
FLUSH_PROXIES = 4


def odd_port(proxy: Proxy) -> bool:
    return proxy.port % 2 == 1


async def async_lease_loop(
    storage: AsyncRedisStorage, reports: Sequence[LoopReport], stop: threading.Event
) -> None:
    """``lease_loop`` for ``AsyncRedisProxyManager``: one task per report, one storage."""
    manager = AsyncRedisProxyManager(storage)

    async def one(report: LoopReport) -> None:
        n = 0
        while not stop.is_set():
            selector = SELECTORS[n % len(SELECTORS)]
            n += 1
            try:
                leased = await manager.acquire("pool", report.name, 30, selector=selector)
            except Exception as exc:
                report.error(exc)
                continue
            if leased is None:
                report.none += 1
                await asyncio.sleep(0.0005)
                continue
            report.granted.append((str(leased.lease.id), str(leased.proxy.id)))
            try:
                await manager.release_proxy(leased)
            except Exception as exc:
                report.error(exc)
                report.unreleased.append(leased.lease)

    try:
        await asyncio.gather(*(one(r) for r in reports))
    finally:
        await storage.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("pause", [0.02, 0.002], ids=["every-20ms", "every-2ms"])
def test_script_flush_mid_run_fails_no_acquire(pause: float, opened: list[RedisStorage]) -> None:
    """``SCRIPT FLUSH`` again and again while sync threads and asyncio tasks lease.

    One thread leases through a Python predicate (the compare-and-lease script), the
    others through the one-call acquire. Every NOSCRIPT is answered by reloading the
    scripts and sending the batch again; nothing fails, nothing is granted twice. Every
    2 ms, a flush often lands between a reload and the re-send: a client must still get
    its script run.
    """
    started = time.monotonic()
    with RedisServer() as server:
        direct = connect(server.url, opened)
        pool = seed(direct, FLUSH_PROXIES, max_concurrency=1)
        flusher = redis.Redis.from_url(server.url)
        stop = threading.Event()
        flushes = 0

        def flush() -> None:
            nonlocal flushes
            while not stop.is_set():
                flusher.script_flush()
                flushes += 1
                time.sleep(pause)

        sync_reports = [LoopReport(f"sync-{i}") for i in range(3)]
        async_reports = [LoopReport(f"async-{i}") for i in range(2)]
        managers = [RedisProxyManager(connect(server.url, opened)) for _ in sync_reports]
        filters = [None, None, ProxyFilters(predicate=odd_port)]
        async_storage = AsyncRedisStorage.from_url(
            server.url, prefix="faults", lease_retention_seconds=RETENTION
        )
        threads = run_threads(
            [
                *(
                    lambda m=m, r=r, f=f: lease_loop(m, r, stop, 30, f)
                    for m, r, f in zip(managers, sync_reports, filters, strict=True)
                ),
                lambda: asyncio.run(async_lease_loop(async_storage, async_reports, stop)),
                flush,
            ]
        )
        try:
            time.sleep(FLUSH_SECONDS)
        finally:
            stop.set()
            join_all(threads)
            flusher.close()

        reports = sync_reports + async_reports
        loads = cmdstat(direct, "script|load").get("calls", 0)
        noscript = cmdstat(direct, "evalsha").get("failed_calls", 0)  # NOSCRIPT answers
        leases = {str(x.id): x for x in direct.list_leases()}
        granted = [lid for r in reports for lid, _ in r.granted]
        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r.errors)
        peaks = peak_per_proxy(leases.values())
        print(
            f"\nscript flush every {pause * 1000:.0f} ms: flushes={flushes} NOSCRIPT={noscript} "
            f"script loads={loads} granted={[len(r.granted) for r in reports]} "
            f"none={sum(r.none for r in reports)} errors={dict(errors)} "
            f"peak per proxy={sorted(peaks.values())} elapsed={time.monotonic() - started:.1f}s"
        )
        for r in reports:
            for lease in r.unreleased:
                managers[0].release_proxy(lease)

        assert not errors, [(r.name, r.messages) for r in reports if r.messages]
        assert flushes > 30 and loads > 20, (flushes, loads)  # the NOSCRIPT path was taken
        assert all(len(r.granted) > 10 for r in reports), [len(r.granted) for r in reports]
        ports = {str(p.id): p.port for p in direct.list_proxies(str(pool.id))}
        assert all(ports[pid] % 2 == 1 for _, pid in sync_reports[2].granted)
        assert len(granted) == len(set(granted)) and set(granted) == set(leases)
        assert all(peak <= 1 for peak in peaks.values()), peaks
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


# ---------------------------------------------------------------------- lost replies

LOST_PREFIX = "lost"


def no_retry_storage(url: str, opened: list[RedisStorage]) -> RedisStorage:
    """A storage whose redis-py client never re-sends: only the manager may."""
    client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=2.0)
    storage = RedisStorage(client, prefix=LOST_PREFIX, lease_retention_seconds=RETENTION)
    opened.append(storage)
    return storage


@pytest.mark.parametrize("who", ["redis-py", "manager", "stock-pharox"])
def test_lost_replies_leave_one_lease_and_no_orphan(
    who: str, opened: list[RedisStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut the reply of the acquire, then of the release, after the server ran them.

    ``redis-py``: ``from_url``'s Retry re-sends, RedisProxyManager(retries=0) through
    ``acquire_proxy``. ``manager``: a client that never re-sends, RedisProxyManager's own
    retries re-send, through ``with_proxy``. ``stock-pharox``: pharox's ProxyManager on a
    ``from_url`` storage; the cut hits its ``create_lease`` and ``release_lease``.
    Each time the caller gets the one lease the server made; the audit counts it, and
    nothing once it is released.
    """
    with RedisServer(tcp=True) as server, Relay("127.0.0.1", server.port) as relay:
        direct = connect(server.url, opened, prefix=LOST_PREFIX)
        for source in sources().values():  # the cut reply must be a script's, not NOSCRIPT
            direct.client.script_load(source.text)
        pool = seed(direct, 1, max_concurrency=None)  # a second lease would count 2
        storage = (
            no_retry_storage(relay.url, opened)
            if who == "manager"
            else connect(relay.url, opened, prefix=LOST_PREFIX)
        )
        assert storage.get_pool_stats(pool.name) is not None  # connect, cache names
        storage.ensure_consumer("w")

        def check_one_active(lease: Lease) -> None:
            (stored,) = direct.list_leases()
            assert stored.id == lease.id and stored.status is LeaseStatus.ACTIVE
            assert (stored.acquired_at, stored.expires_at) == (lease.acquired_at, lease.expires_at)
            (proxy,) = direct.list_proxies(str(pool.id))
            assert proxy.current_leases == 1
            report = direct.audit()
            assert report.drift == ()
            assert report.active_leases == 1, report

        if who == "stock-pharox":
            stock = ProxyManager(storage)
            for name in ("create_lease", "release_lease"):
                original = getattr(storage, name)

                def cut_then(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                    relay.cut_next_reply()
                    return _original(*args, **kwargs)

                monkeypatch.setattr(storage, name, cut_then)
            lease = stock.acquire_proxy(pool.name, "w", 60)
            assert lease is not None
            check_one_active(lease)
            stock.release_proxy(lease)
        elif who == "redis-py":
            manager = RedisProxyManager(storage, retries=0)
            relay.cut_next_reply()
            lease = manager.acquire_proxy(pool.name, "w", 60)
            assert lease is not None
            check_one_active(lease)
            relay.cut_next_reply()
            manager.release_proxy(lease)
        else:
            manager = RedisProxyManager(storage, retries=2)
            relay.cut_next_reply()
            with manager.with_proxy(pool.name, "w", 60) as leased:
                assert leased is not None
                lease = leased.lease
                check_one_active(lease)
                relay.cut_next_reply()  # the release on leaving the block
        assert lease.released_at is not None
        assert (relay.cuts, relay.connections) == (2, 3)  # two cuts, two reconnects
        (stored,) = direct.list_leases()
        assert stored.id == lease.id and stored.status is LeaseStatus.RELEASED
        stats = direct.get_pool_stats(pool.name)
        assert stats is not None and stats.total_leases == 0, stats
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


# ---------------------------------------------------------------------- unreachable Redis

SOCKET_TIMEOUT = 0.5
SLACK = 1.0  # scheduling noise on a loaded 2-core machine


def policy_bound(
    storage: RedisStorage, manager_retries: int, error: type[Exception], per_attempt: float
) -> float:
    """The longest a call may take under the retry policy when every attempt fails.

    redis-py makes ``retries + 1`` attempts with its backoff between them when it retries
    ``error``, one attempt otherwise; the manager repeats that ``manager_retries + 1``
    times with its own delays. ``per_attempt`` is what one failed attempt costs: the
    socket timeout when Redis stalls, ~0 when the connection is refused.
    """
    retry = storage.client.get_retry()
    assert retry is not None
    retried = issubclass(error, tuple(retry._supported_errors))  # no public accessor
    retries = retry.get_retries() if retried else 0
    backoff = retry._backoff
    client_call = (retries + 1) * per_attempt + sum(
        backoff.compute(i) for i in range(1, retries + 1)
    )
    manager_delays = sum(RETRY_BASE_SECONDS * 2**i for i in range(manager_retries))
    return (manager_retries + 1) * client_call + manager_delays


def timed(call: Callable[[], Any]) -> tuple[float, Optional[BaseException]]:
    began = time.monotonic()
    try:
        call()
    except Exception as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["stopped", "stalled", "nobody-listens"])
def test_unreachable_redis_raises_storage_error_in_bounded_time(
    outage: str, opened: list[RedisStorage]
) -> None:
    """Acquire, release and a storage read raise RedisStorageError, never hang.

    ``from_url(socket_timeout=0.5)``: each call fails within the retry policy's bound:
    redis-py re-tries a refused connection 3 times but not a timeout, and the manager
    sends an acquire or release up to 3 times. So a stalled Redis costs a storage read
    one socket timeout and an acquire three; a refused connection only the backoffs.
    The three calls run at once, each on its own client, to keep the test short.
    """
    with ExitStack() as stack:
        per_attempt = 0.0
        if outage == "nobody-listens":
            url = f"redis://127.0.0.1:{free_port()}/0"
            lease = Lease(
                proxy_id=uuid.uuid4(),
                consumer_id=uuid.uuid4(),
                pool_id=uuid.uuid4(),
                pool_name="pool",
                expires_at=datetime.now(timezone.utc) + timedelta(seconds=60),
            )
            server: Optional[RedisServer] = None
        else:
            server = stack.enter_context(RedisServer(tcp=True, appendonly=True))
            direct = connect(server.url, opened)
            seed(direct, 1, max_concurrency=None)
            url = server.url
            relay = None
            if outage == "stalled":
                relay = stack.enter_context(Relay("127.0.0.1", server.port))
                url = relay.url
            taken = RedisProxyManager(connect(url, opened)).acquire_proxy("pool", "w", 60)
            assert taken is not None
            lease = taken
            if outage == "stalled":
                assert relay is not None
                relay.stall()
                per_attempt = SOCKET_TIMEOUT
            else:
                server.stop()
        acquirer = RedisProxyManager(connect(url, opened, socket_timeout=SOCKET_TIMEOUT))
        releaser = RedisProxyManager(connect(url, opened, socket_timeout=SOCKET_TIMEOUT))
        reader = connect(url, opened, socket_timeout=SOCKET_TIMEOUT)
        calls = {
            "acquire": (lambda: acquirer.acquire_proxy("pool", "w", 60), acquirer.policy.retries),
            "release": (lambda: releaser.release_proxy(lease), releaser.policy.retries),
            "stats": (lambda: reader.get_pool_stats("pool"), 0),
        }
        with ThreadPoolExecutor(len(calls)) as executor:
            futures = {name: executor.submit(timed, call) for name, (call, _) in calls.items()}
            outcomes = {name: f.result(timeout=60) for name, f in futures.items()}
        print(
            f"\n{outage}: "
            + ", ".join(f"{n} {e:.2f}s {error_name(x)}" for n, (e, x) in outcomes.items() if x)
        )
        expected = redis.TimeoutError if outage == "stalled" else redis.ConnectionError
        for name, (elapsed, exc) in outcomes.items():
            assert isinstance(exc, RedisStorageError), (name, exc)
            assert isinstance(exc.__cause__, expected), (name, repr(exc.__cause__))
            storage = {"acquire": acquirer.storage, "release": releaser.storage}.get(name, reader)
            bound = policy_bound(storage, calls[name][1], expected, per_attempt)
            assert elapsed <= bound + SLACK, (name, elapsed, bound)
            if outage == "stalled":
                assert elapsed >= SOCKET_TIMEOUT, (name, elapsed)
        if server is not None:
            if relay is not None:
                relay.close()
            else:
                server.start()
            report = direct.audit()
            assert report.drift == ()
            assert report.active_leases == 1, report  # the one taken before the outage


@pytest.mark.slow
def test_retry_helpers_surface_an_outage_and_ride_out_a_short_one(
    opened: list[RedisStorage],
) -> None:
    """pharox's retry helpers on top of an outage.

    They retry only while no proxy is free, so with Redis down they raise the storage's
    ``RedisStorageError`` at once (sync manager and pharox's stock manager alike). When
    Redis comes back within the client's own retry window the same helpers succeed.
    """
    with RedisServer(tcp=True, appendonly=True) as server:
        storage = connect(server.url, opened, socket_timeout=SOCKET_TIMEOUT)
        pool = seed(storage, 2, max_concurrency=1)
        manager = RedisProxyManager(storage)
        stock = ProxyManager(storage)
        server.stop()
        refused = policy_bound(storage, manager.policy.retries, redis.ConnectionError, 0.0) + SLACK

        def with_retrying(target: Any) -> None:
            with target.with_retrying_lease(pool.name, "w", 60, max_attempts=3):
                raise AssertionError("entered the block without Redis")

        for helper in (
            lambda: manager.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=3),
            lambda: with_retrying(manager),
            lambda: stock.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=3),
            lambda: with_retrying(stock),
        ):
            elapsed, exc = timed(helper)
            assert isinstance(exc, RedisStorageError), repr(exc)
            assert isinstance(exc.__cause__, redis.ConnectionError), repr(exc.__cause__)
            assert elapsed < refused, elapsed

        outage = 0.3
        comebacks = []
        for attempt in range(2):
            if attempt:
                server.stop()
            back = threading.Timer(outage, server.start)
            began = time.monotonic()
            back.start()
            try:
                if attempt == 0:
                    lease = manager.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=2)
                    assert lease is not None
                else:
                    with manager.with_retrying_lease(pool.name, "w", 60) as inside:
                        assert inside is not None
                comebacks.append(round(time.monotonic() - began, 3))
            finally:
                back.join()
            assert comebacks[-1] >= outage
        print(f"\nretry helpers: rode out {outage}s outages in {comebacks} s")

        assert lease.status is LeaseStatus.ACTIVE
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 1, report  # `lease`; with_retrying_lease released its own
        manager.release_proxy(lease)
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


# ---------------------------------------------------------------------- skewed clocks

SKEW = timedelta(hours=1)
SKEW_LEASE_SECONDS = 2.0
_REAL_DATETIME = datetime


class _AnyDatetime(type):
    """Metaclass: the skewed class still recognises every real datetime as its own."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _REAL_DATETIME)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _REAL_DATETIME)


@contextmanager
def skewed_clock(offset: timedelta) -> Iterator[None]:
    """Move this process's wall clock by ``offset`` for pharox, pharox_redis and redis-py.

    ``time.time``/``time.time_ns`` everywhere, and ``datetime.now``/``utcnow`` in every
    loaded module of those packages that imported the ``datetime`` class.
    """
    real_time, real_time_ns = time.time, time.time_ns
    seconds = offset.total_seconds()

    class SkewedDatetime(_REAL_DATETIME, metaclass=_AnyDatetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return _REAL_DATETIME.now(tz) + offset

        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return _REAL_DATETIME.now(timezone.utc).replace(tzinfo=None) + offset

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() + seconds)
        patch.setattr(time, "time_ns", lambda: real_time_ns() + int(seconds * 1e9))
        for name, module in list(sys.modules.items()):
            if module is None or name.split(".")[0] not in ("pharox", "pharox_redis", "redis"):
                continue
            for attr, value in list(vars(module).items()):
                if value is _REAL_DATETIME:
                    patch.setattr(module, attr, SkewedDatetime)
        yield


def test_skewed_client_clocks_do_not_change_lease_expiry(opened: list[RedisStorage]) -> None:
    """Clients an hour ahead and an hour behind lease for 2 s: the lease lasts 2 s.

    acquired_at, expires_at and released_at are the server's; a cleanup run by a client
    an hour ahead reclaims nothing early; the lease is reclaimed once the server's clock
    passes its expiry.
    """
    with RedisServer() as server:
        direct = connect(server.url, opened)
        pool = seed(direct, 2, max_concurrency=1)
        storage = connect(server.url, opened)
        manager = RedisProxyManager(storage)
        held: dict[str, Lease] = {}
        for name, offset in (("ahead", SKEW), ("behind", -SKEW)):
            with skewed_clock(offset):
                skew = flows.now_utc() - datetime.now(timezone.utc)
                assert abs(skew - offset) < timedelta(seconds=1), "the clock is not skewed"
                assert (
                    abs(time.time() - offset.total_seconds() - _REAL_DATETIME.now().timestamp()) < 1
                )
                before = server_now(direct)
                lease = manager.acquire_proxy(pool.name, name, SKEW_LEASE_SECONDS)
                after = server_now(direct)
                assert lease is not None
                assert before <= lease.acquired_at <= after, (before, lease, after)
                assert lease.expires_at - lease.acquired_at == timedelta(seconds=SKEW_LEASE_SECONDS)
                assert storage.cleanup_expired_leases() == 0
                assert manager.cleanup_expired_leases() == 0
                held[name] = lease

        sleep_until(direct, max(x.acquired_at for x in held.values()) + timedelta(seconds=1.5))
        for offset in (SKEW, -SKEW):
            with skewed_clock(offset):
                assert manager.acquire_proxy(pool.name, "late", SKEW_LEASE_SECONDS) is None
                assert storage.cleanup_expired_leases() == 0
        for lease in held.values():
            stored = direct.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.ACTIVE

        sleep_until(direct, max(x.expires_at for x in held.values()))
        with skewed_clock(-SKEW):
            assert storage.cleanup_expired_leases() == 2
        for lease in held.values():
            stored = direct.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.RELEASED
            assert stored.released_at is not None
            assert timedelta(0) <= stored.released_at - lease.expires_at < timedelta(seconds=1)

        with skewed_clock(SKEW):
            before = server_now(direct)
            lease = manager.acquire_proxy(pool.name, "ahead", 60)
            assert lease is not None
            manager.release_proxy(lease)
            after = server_now(direct)
        assert lease.released_at is not None and before <= lease.released_at <= after
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report


# ---------------------------------------------------------------------- memory

CYCLES = 100_000
CHUNK = 1000  # cycles per chunk: one pipeline of acquires, then one of releases
SAMPLE_EVERY = 10_000
DRAIN = 500
MEMORY_RETENTION = 1.0


def drive_pipelined(storage: RedisStorage, ops: Sequence[Op[Any]]) -> list[Any]:
    """Run many core operations at once: each step of every op goes in one pipeline.

    The ops are the ones the managers run (``acquire.acquire``, ``leases.released``); only
    the transport differs, so 100,000 cycles take seconds instead of a minute.
    """
    results: list[Any] = [None] * len(ops)
    pending: list[tuple[int, Op[Any], Any]] = []
    for i, op in enumerate(ops):
        try:
            pending.append((i, op, next(op)))
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        pipe = storage.client.pipeline(transaction=False)
        for _, _, batch in pending:
            assert not batch.atomic
            for call in batch.calls:
                pipe.execute_command(*storage.executor.wire(call).args, **RAW)
        replies = pipe.execute()
        following = []
        at = 0
        for i, op, batch in pending:
            mine, at = replies[at : at + len(batch.calls)], at + len(batch.calls)
            try:
                following.append((i, op, op.send(list(mine))))
            except StopIteration as stop:
                results[i] = stop.value
        pending = following
    return results


@pytest.mark.slow
def test_memory_stays_flat_over_100k_cycles(opened: list[RedisStorage]) -> None:
    """100,000 acquire/release cycles with a 1 s retention; memory does not grow.

    At every sample the pool holds only the lease records released within about the
    last second (retention), and once the retention has passed and a few more cycles
    have run, only those cycles' records are left and memory is back near its baseline.
    """
    started = time.monotonic()
    with RedisServer() as server:
        storage = connect(server.url, opened, lease_retention_seconds=MEMORY_RETENTION)
        pool = seed(storage, 8, max_concurrency=None)
        keys = storage.context.keys.pool(pool.id)
        manager = RedisProxyManager(storage)
        warm = manager.acquire_proxy(pool.name, "w", 60)  # cache names, load scripts
        assert warm is not None
        manager.release_proxy(warm)

        def cycles(n: int) -> set[str]:
            asked = [flows.request(pool.name, "w", 60, None, None) for _ in range(n)]
            ops = [acquire.acquire(storage.context, r) for r in asked]
            held = [a.lease for a in drive_pipelined(storage, ops) if a.lease is not None]
            assert len(held) == n
            drive_pipelined(storage, [leases.released(storage.context, x) for x in held])
            return {str(x.id) for x in held}

        def sample() -> tuple[int, int, int]:
            used = int(storage.client.info("memory")["used_memory"])
            return used, storage.client.hlen(keys.leases), storage.client.zcard(keys.history)

        time.sleep(MEMORY_RETENTION + 0.1)
        cycles(DRAIN)  # purge the warm-up record
        baseline = sample()
        done = 0
        finished_at: list[tuple[float, int]] = []  # (monotonic, cycles done by then)
        samples: list[tuple[int, tuple[int, int, int], int]] = []
        run_began = time.monotonic()
        while done < CYCLES:
            cycles(CHUNK)
            done += CHUNK
            now = time.monotonic()
            finished_at.append((now, done))
            if done % SAMPLE_EVERY == 0:
                # records still retained: at most the cycles released in the last retention
                window_start = now - MEMORY_RETENTION - 0.5
                earlier = [d for t, d in finished_at if t < window_start]
                recent = done - (earlier[-1] if earlier else 0) + CHUNK
                samples.append((done, sample(), recent))
        run_seconds = time.monotonic() - run_began
        peak_used = max(s[1][0] for s in samples)
        print(
            f"\nmemory: {CYCLES} cycles in {run_seconds:.1f}s ({CYCLES / run_seconds:.0f}/s); "
            f"baseline used_memory={baseline[0]} records={baseline[1]}; samples "
            + " ".join(f"{d // 1000}k:{u}/{n}" for d, (u, n, _), _ in samples)
        )
        for done_then, (_, records, history), recent in samples:
            assert history == records, (done_then, records, history)
            assert records <= recent, f"at {done_then}: {records} records, {recent} recent"
        assert peak_used - baseline[0] < 16_000_000, (peak_used, baseline)
        assert samples[-1][1][0] - samples[1][1][0] < 4_000_000, samples

        time.sleep(MEMORY_RETENTION + 0.1)
        drained = cycles(DRAIN)
        used, records, history = sample()
        kept = {text(x) for x in storage.client.hkeys(keys.leases)}
        print(
            f"after the retention and {DRAIN} more cycles: used_memory={used} records={records} "
            f"elapsed={time.monotonic() - started:.1f}s"
        )
        # Every record from before the retention is gone: only the drain's are left (all
        # of them, unless this process stalled for a second mid-drain).
        assert kept <= drained and records == history == len(kept) > 0, (records, history)
        assert used - baseline[0] < 1_000_000, (used, baseline)
        stats = storage.get_pool_stats(pool.name)
        assert stats is not None and stats.total_leases == 0, stats
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report
