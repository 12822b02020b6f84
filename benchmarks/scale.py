"""Section 4: pool size. Bulk-load time, memory per proxy, acquire latency, memory churn.

Each pool size gets a pool of its own (a prefix of its own). Proxies are loaded with
``add_proxies_bulk``, the storage's bulk path, in chunks of ``LOAD_CHUNK`` (so a pool of
1,000,000 never holds all its pydantic models at once); only the ``add_proxies_bulk`` calls
(and ``save_pool``) are timed, not building the models.
Memory per proxy is measured two ways, and the larger counts: the server's ``used_memory``
before and after the load, and ``MEMORY USAGE ... SAMPLES 0`` summed over the pool's keys.

Acquire latency is timed on all pools in turn (one acquire+release on each pool, then the
next selector), so noise hits every size alike. The churn run then makes
``--churn-cycles`` acquire/release cycles on the largest pool with a short lease retention,
and compares memory before and after, each measured after the retention has passed and a
few cycles (whose scripts purge expired records) have run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional
from uuid import UUID

from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus, SelectorStrategy

from pharox_redis import RedisProxyManager, RedisStorage

from .redis_target import RedisTarget
from .settings import Settings
from .stats import Latencies

SELECTORS = tuple(SelectorStrategy)
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)
WARM_UP_CYCLES = 20
SETTLE_CYCLES = 300  # cycles after the retention passed: their scripts purge old records
CONSUMER = "bench-scale"
LOAD_CHUNK = 50_000


def plain_proxy(pool_id: UUID, n: int) -> Proxy:
    """A proxy with no filter attributes; distinct health-check times."""
    return Proxy(
        host=f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}",
        port=1024 + n % 60000,
        protocol=ProxyProtocol.HTTP,
        pool_id=pool_id,
        status=ProxyStatus.ACTIVE,
        max_concurrency=1,
        checked_at=BASE_TIME + timedelta(seconds=n),
    )


@dataclass(frozen=True)
class Memory:
    used: int  # server used_memory
    keys: int  # MEMORY USAGE summed over the prefix's keys


@dataclass
class PoolSize(Latencies):
    size: int
    load_seconds: float
    build_seconds: float  # building the pydantic models, before the load
    memory_used_delta: int
    memory_keys: int
    latencies: list[float] = field(default_factory=list)
    by_selector: dict[str, list[float]] = field(default_factory=dict)

    @property
    def bytes_per_proxy(self) -> float:
        return max(self.memory_used_delta, self.memory_keys) / self.size


@dataclass
class Churn:
    size: int
    cycles: int
    seconds: float
    retention: float
    before: Memory
    after: Memory
    records_before: int  # lease records kept in the pool
    records_after: int

    @property
    def drift(self) -> float:
        """The larger relative change of the two memory measures, signed, as after/before."""
        used = self.after.used / self.before.used
        keys = self.after.keys / self.before.keys
        return used if abs(used - 1) >= abs(keys - 1) else keys

    @property
    def worse(self) -> tuple[int, int]:
        """(before, after) bytes of the measure that moved most."""
        used = self.after.used / self.before.used
        keys = self.after.keys / self.before.keys
        if abs(used - 1) >= abs(keys - 1):
            return self.before.used, self.after.used
        return self.before.keys, self.after.keys


@dataclass
class ScaleResult:
    sizes: list[PoolSize] = field(default_factory=list)
    churn: Optional[Churn] = None


@dataclass
class LoadedPool:
    storage: RedisStorage
    prefix: str
    pool: ProxyPool
    manager: RedisProxyManager


def load_pool(
    target: RedisTarget,
    storage: RedisStorage,
    size: int,
    make: Callable[[UUID, int], Proxy],
    keep: bool = False,
) -> tuple[LoadedPool, PoolSize, list[Proxy]]:
    """Save a pool of ``size`` proxies in bulk; time the load and measure its memory.

    Returns the proxies too when ``keep`` is set (an empty list otherwise).
    """
    prefix = storage.context.keys.prefix
    pool = ProxyPool(name=f"scale-{size}")
    kept: list[Proxy] = []
    built = loaded = 0.0
    used_before = target.used_memory()
    started = time.perf_counter()
    storage.save_pool(pool)
    loaded += time.perf_counter() - started
    for first in range(0, size, LOAD_CHUNK):
        started = time.perf_counter()
        proxies = [make(pool.id, n) for n in range(first, min(first + LOAD_CHUNK, size))]
        built += time.perf_counter() - started
        started = time.perf_counter()
        storage.add_proxies_bulk(proxies)
        loaded += time.perf_counter() - started
        if keep:
            kept += proxies
    used_delta = target.used_memory() - used_before
    keys = target.prefix_memory(prefix)
    loaded_pool = LoadedPool(storage, prefix, pool, RedisProxyManager(storage))
    return loaded_pool, PoolSize(size, loaded, built, used_delta, keys), kept


def cycle(loaded: LoadedPool, selector: SelectorStrategy) -> Optional[float]:
    """One acquire (timed) and release; the acquire's seconds, None when nothing was free."""
    manager = loaded.manager
    start = time.perf_counter()
    lease = manager.acquire_proxy(loaded.pool.name, CONSUMER, selector=selector)
    took = time.perf_counter() - start
    if lease is None:
        return None
    manager.release_proxy(lease)
    return took


def lease_records(loaded: LoadedPool) -> int:
    """Return how many lease records (active and kept after release) the pool holds.

    Read through ``list_leases``, so it does not depend on the storage's key layout.
    """
    return len(loaded.storage.list_leases())


def settle(loaded: LoadedPool, retention: float) -> None:
    """Let the retention pass, then run cycles whose scripts purge the expired records."""
    time.sleep(retention + 0.3)
    for i in range(SETTLE_CYCLES):
        cycle(loaded, SELECTORS[i % len(SELECTORS)])


def churn(
    target: RedisTarget,
    loaded: LoadedPool,
    size: int,
    cycles: int,
    retention: float,
    say: Callable[[str], None],
) -> Churn:
    """Measure memory before and after ``cycles`` acquire/release cycles."""
    settle(loaded, retention)
    before = Memory(target.used_memory(), target.prefix_memory(loaded.prefix))
    records_before = lease_records(loaded)
    started = time.perf_counter()
    report_every = max(cycles // 4, 1)
    for i in range(cycles):
        cycle(loaded, SELECTORS[i % len(SELECTORS)])
        if (i + 1) % report_every == 0 and i + 1 < cycles:
            say(f"    churn: {i + 1:,}/{cycles:,} cycles")
    seconds = time.perf_counter() - started
    settle(loaded, retention)
    after = Memory(target.used_memory(), target.prefix_memory(loaded.prefix))
    return Churn(
        size,
        cycles,
        seconds,
        retention,
        before,
        after,
        records_before,
        lease_records(loaded),
    )


def run_scale(settings: Settings, target: RedisTarget, say: Callable[[str], None]) -> ScaleResult:
    result = ScaleResult()
    retention = settings.churn_retention
    with ExitStack() as stack:
        pools: list[LoadedPool] = []
        for size in sorted(set(settings.scale_sizes)):
            storage = stack.enter_context(
                target.storage(f"scale{size}", lease_retention_seconds=retention)
            )
            loaded, measured, _ = load_pool(target, storage, size, plain_proxy)
            pools.append(loaded)
            result.sizes.append(measured)
            say(
                f"  {size:>7,} proxies: loaded in {measured.load_seconds:.2f} s "
                f"({size / measured.load_seconds:,.0f}/s), {measured.bytes_per_proxy:,.0f} "
                "bytes/proxy"
            )
        for loaded in pools:
            for i in range(WARM_UP_CYCLES):
                cycle(loaded, SELECTORS[i % len(SELECTORS)])
        for i in range(settings.scale_acquires):
            selector = SELECTORS[i % len(SELECTORS)]
            for loaded, measured in zip(pools, result.sizes, strict=True):
                took = cycle(loaded, selector)
                if took is not None:
                    measured.latencies.append(took)
                    measured.by_selector.setdefault(selector.value, []).append(took)
        for measured in result.sizes:
            say(
                f"  {measured.size:>7,} proxies: acquire p50 {(measured.p50 or 0) * 1e6:,.0f} us "
                f"p99 {(measured.p99 or 0) * 1e6:,.0f} us"
            )
        if settings.churn_cycles > 0 and pools:
            size = result.sizes[-1].size
            say(f"  churn: {settings.churn_cycles:,} cycles on {size:,} proxies")
            result.churn = churn(target, pools[-1], size, settings.churn_cycles, retention, say)
            c = result.churn
            say(
                f"  churn: {c.cycles / c.seconds:,.0f} cycles/s; memory after/before "
                f"{c.drift:.4f}; lease records {c.records_before} -> {c.records_after}"
            )
    return result
