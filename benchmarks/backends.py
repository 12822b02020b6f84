"""Section 1: the same leasing workload on every backend, with pharox's own benchmark.

pharox's ``run_leasing_benchmark`` (2000 iterations, a pool of 32, one process) runs the
stock ``ProxyManager`` on each storage. :func:`fast_leasing_benchmark` is the same loop with
``RedisProxyManager``. Each (backend, manager) runs once per selector; selectors are the outer
loop, so the figures that are divided by each other are measured minutes apart at most.
Every run starts on empty storage (a fresh Redis prefix, a fresh Postgres schema).

It also counts the round trips an acquire and a release cost on the real Redis (T6): every
batch the storage's executor sends (``executor.observers`` see each) is one round trip.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from uuid import UUID

from pharox import (
    InMemoryStorage,
    IStorage,
    Proxy,
    ProxyManager,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
    run_leasing_benchmark,
)
from pharox.benchmarks import BenchmarkResult
from pharox.utils import bootstrap_consumer, bootstrap_pool, bootstrap_proxy

from pharox_redis import RedisProxyManager, RedisStorage

from . import postgres
from .redis_target import RedisTarget
from .settings import Settings
from .targets import IN_MEMORY, POSTGRES, REDIS_FAST, REDIS_STOCK

SELECTORS = tuple(SelectorStrategy)
CONSUMER = "benchmark-consumer"  # the names pharox's run_leasing_benchmark uses
POOL = "benchmark-pool"
COUNTED_CYCLES = 50  # acquire/release cycles per selector whose round trips are counted


@dataclass(frozen=True)
class LeasingRow:
    label: str  # backend/manager
    selector: str
    iterations: int
    hits: int
    seconds: float

    @property
    def cycles_per_second(self) -> float:
        return self.iterations / self.seconds


@dataclass(frozen=True)
class RoundTrips:
    manager: str
    acquire: float  # round trips per acquire
    acquire_commands: float  # commands sent per acquire (pipelined ones count apiece)
    release: float
    release_commands: float


@dataclass
class BackendsResult:
    rows: list[LeasingRow] = field(default_factory=list)
    round_trips: list[RoundTrips] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_selector(self) -> dict[str, dict[str, float]]:
        """Return cycles/s by configuration label, then selector."""
        out: dict[str, dict[str, float]] = {}
        for row in self.rows:
            out.setdefault(row.label, {})[row.selector] = row.cycles_per_second
        return out


def fast_leasing_benchmark(
    storage: RedisStorage,
    *,
    iterations: int = 1000,
    pool_size: int = 32,
    selector: SelectorStrategy = SelectorStrategy.ROUND_ROBIN,
) -> BenchmarkResult:
    """``pharox.run_leasing_benchmark`` with ``RedisProxyManager``: same seeding, same loop."""
    manager = RedisProxyManager(storage)
    bootstrap_consumer(storage, name=CONSUMER)
    pool = bootstrap_pool(storage, name=POOL)
    for i in range(pool_size):
        bootstrap_proxy(
            storage,
            pool=pool,
            host=f"10.0.0.{i + 1}",
            port=8000 + i,
            protocol=ProxyProtocol.HTTP,
            status=ProxyStatus.ACTIVE,
        )
    start = perf_counter()
    hits = 0
    for _ in range(iterations):
        lease = manager.acquire_proxy(pool_name=POOL, consumer_name=CONSUMER, selector=selector)
        if lease:
            hits += 1
            manager.release_proxy(lease)
    elapsed = perf_counter() - start
    return BenchmarkResult(
        name="leasing",
        iterations=iterations,
        elapsed_seconds=elapsed,
        ops_per_second=iterations / elapsed if elapsed > 0 else float("inf"),
        metadata={"hits": hits, "misses": iterations - hits, "pool_size": pool_size},
    )


StorageFactory = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Config:
    label: str
    make_storage: StorageFactory
    fast: bool  # RedisProxyManager instead of pharox's stock ProxyManager


@contextmanager
def _in_memory() -> Iterator[IStorage]:
    yield InMemoryStorage()


def _fakeredis_factory() -> StorageFactory:
    import fakeredis

    @contextmanager
    def make() -> Iterator[RedisStorage]:
        client = fakeredis.FakeRedis()
        try:
            yield RedisStorage(client, prefix=f"bench-fake-{uuid.uuid4().hex[:10]}")
        finally:
            client.close()

    return make


def configurations(
    settings: Settings, target: RedisTarget, say: Callable[[str], None], notes: list[str]
) -> list[Config]:
    """Return the (backend, manager) pairs to run; note the ones that cannot run."""

    def real() -> AbstractContextManager[Any]:
        return target.storage("lease")

    configs = [Config(REDIS_FAST, real, True), Config(REDIS_STOCK, real, False)]
    if settings.fakeredis:
        if importlib.util.find_spec("fakeredis") and importlib.util.find_spec("lupa"):
            fake = _fakeredis_factory()
            configs += [
                Config("fakeredis/RedisProxyManager", fake, True),
                Config("fakeredis/ProxyManager", fake, False),
            ]
        else:
            notes.append("fakeredis skipped: fakeredis[lua] is not installed (the test extra)")
    configs.append(Config(IN_MEMORY, _in_memory, False))
    if settings.postgres_dsn is None:
        notes.append("PostgresStorage skipped: --postgres-dsn none")
    else:
        version, why_not = postgres.probe(settings.postgres_dsn)
        if why_not is not None:
            notes.append(f"PostgresStorage skipped: {why_not}")
        else:
            dsn = settings.postgres_dsn

            def pg() -> AbstractContextManager[Any]:
                return postgres.postgres_storage(dsn)

            configs.append(Config(POSTGRES, pg, False))
            notes.append(f"PostgresStorage: PostgreSQL {version}, a private schema per run")
    for note in notes:
        say(f"  {note}")
    return configs


def count_round_trips(target: RedisTarget, fast: bool, pool_size: int) -> RoundTrips:
    """Count the batches (round trips) and commands of acquires and releases, warm caches."""
    with target.storage("trips") as storage:
        manager = RedisProxyManager(storage) if fast else ProxyManager(storage)
        bootstrap_consumer(storage, name=CONSUMER)
        pool = bootstrap_pool(storage, name=POOL)
        storage.add_proxies_bulk([bootstrap_proxy_model(pool.id, i) for i in range(pool_size)])
        batches: list[int] = []  # commands per round trip, since the last reset
        storage.executor.observers.append(lambda batch: batches.append(len(batch.calls)))
        acquire = [0, 0]
        release = [0, 0]
        for selector in SELECTORS:
            lease = manager.acquire_proxy(POOL, CONSUMER, selector=selector)  # warm up
            if lease:
                manager.release_proxy(lease)
            for _ in range(COUNTED_CYCLES):
                batches.clear()
                lease = manager.acquire_proxy(POOL, CONSUMER, selector=selector)
                acquire[0] += len(batches)
                acquire[1] += sum(batches)
                batches.clear()
                if lease:
                    manager.release_proxy(lease)
                release[0] += len(batches)
                release[1] += sum(batches)
        n = COUNTED_CYCLES * len(SELECTORS)
        name = "RedisProxyManager" if fast else "ProxyManager (stock)"
        return RoundTrips(name, acquire[0] / n, acquire[1] / n, release[0] / n, release[1] / n)


def bootstrap_proxy_model(pool_id: UUID, i: int) -> Proxy:
    """The i-th proxy ``run_leasing_benchmark`` seeds."""
    return Proxy(
        host=f"10.0.0.{i + 1}",
        port=8000 + i,
        protocol=ProxyProtocol.HTTP,
        pool_id=pool_id,
        status=ProxyStatus.ACTIVE,
    )


def run_backends(
    settings: Settings, target: RedisTarget, say: Callable[[str], None]
) -> BackendsResult:
    result = BackendsResult()
    configs = configurations(settings, target, say, result.notes)
    for selector in SELECTORS:
        for config in configs:
            bench = fast_leasing_benchmark if config.fast else run_leasing_benchmark
            try:
                with config.make_storage() as storage:
                    run = bench(
                        storage,
                        iterations=settings.iterations,
                        pool_size=settings.pool_size,
                        selector=selector,
                    )
            except Exception as exc:  # a backend that fails is reported, the run goes on
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                note = f"{config.label} {selector.value} failed: {type(exc).__name__}: {message}"
                result.notes.append(note)
                say(f"  {note}")
                continue
            row = LeasingRow(
                config.label,
                selector.value,
                run.iterations,
                int(run.metadata["hits"]),
                run.elapsed_seconds,
            )
            result.rows.append(row)
            say(
                f"  {config.label:<28} {selector.value:<15} "
                f"{row.cycles_per_second:>9,.0f} cycles/s  hits {row.hits}/{row.iterations}"
            )
    for fast in (False, True):
        trips = count_round_trips(target, fast, settings.pool_size)
        result.round_trips.append(trips)
        say(
            f"  round trips, {trips.manager}: acquire {trips.acquire:g} "
            f"({trips.acquire_commands:g} commands), release {trips.release:g}"
        )
    return result
