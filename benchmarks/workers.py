"""Sections 2-3 and 9: N worker processes on one shared pool, next to the round-trip floor.

For each process count N, N ``spawn`` processes are started once and run a list of timed
windows ("phases", see ``benchmarks.worker_side``), all starting together on a barrier:
the floor (PING, EVALSHA of ``return 1``), acquire+release cycles with pharox's stock
``ProxyManager`` and with ``RedisProxyManager``, and, when this build has them,
``rotate`` and batches of ``acquire_many``/``release_many``. Each manager window gets a pool
of its own (a fresh prefix).

Windows are repeated ``--rounds`` times, in reversed order every other round; the median
rate counts. The workload mirrors pharox's benchmark: ROUND_ROBIN, release right away.
Alongside the rates, each window records the workers' process CPU time and the Redis
server's CPU time (``INFO cpu``) and command time (``INFO commandstats``), per unit.
Afterwards every lease record of a manager window is read back (``list_leases``; the
retention is an hour) and the server-stamped ``[acquired_at, released_at)`` intervals are
replayed to find the peak number of simultaneous leases per proxy.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from pharox import LeaseStatus, Proxy, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import RedisStorage

from .redis_target import RedisTarget
from .settings import Settings
from .stats import Latencies, max_overlap, median
from .worker_side import (
    BATCH_SIZE,
    FLOOR_KINDS,
    KIND_NAMES,
    MANAGER_KINDS,
    POOL_NAME,
    RETENTION_SECONDS,
    START_TIMEOUT,
    Phase,
    kind_available,
    worker_main,
)

__all__ = ["KIND_NAMES", "MANAGER_KINDS", "ConfigResult", "WorkersResult", "run_workers"]


# ---------------------------------------------------------------------- parent side


@dataclass
class Audit:
    leases: int = 0  # lease records read back
    unreleased: int = 0
    peak: int = 0  # most simultaneous leases on one proxy (server clock)
    excess: int = 0  # peak beyond max_concurrency, 0 when none


@dataclass
class ConfigResult(Latencies):
    """One (process count, kind), over all its rounds."""

    processes: int
    kind: str
    rates: list[float] = field(default_factory=list)  # units/s aggregated over processes
    server_us: list[float] = field(default_factory=list)  # Redis command time per unit
    client_cpu_us: list[float] = field(default_factory=list)  # workers' CPU time per unit
    redis_cpu_us: list[float] = field(default_factory=list)  # Redis process CPU per unit
    latencies: list[float] = field(default_factory=list)  # per call of the step
    units: int = 0  # round trips, cycles or leases (see ``benchmarks.worker_side``)
    misses: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)
    audit: Optional[Audit] = None

    @property
    def rate(self) -> float:
        return median(self.rates) or 0.0

    @property
    def server_us_per_op(self) -> Optional[float]:
        return median(self.server_us)

    @property
    def client_cpu_us_per_op(self) -> Optional[float]:
        return median(self.client_cpu_us)

    @property
    def redis_cpu_us_per_op(self) -> Optional[float]:
        return median(self.redis_cpu_us)

    @property
    def exceptions(self) -> int:
        return sum(self.errors.values())


@dataclass
class WorkersResult:
    configs: dict[tuple[int, str], ConfigResult] = field(default_factory=dict)
    max_concurrency: int = 1
    pool_size: int = 0
    batch_pool_size: int = 0  # the batch windows' pool: room for every worker's batch
    unavailable: dict[str, str] = field(default_factory=dict)  # kind -> why it did not run
    notes: list[str] = field(default_factory=list)

    def get(self, processes: int, kind: str) -> Optional[ConfigResult]:
        return self.configs.get((processes, kind))

    def rates(self, kind: str) -> dict[int, float]:
        return {n: c.rate for (n, k), c in sorted(self.configs.items()) if k == kind}


def seed_pool(target: RedisTarget, prefix: str, size: int, max_concurrency: int) -> None:
    storage = RedisStorage.from_url(target.url, prefix=prefix)
    try:
        pool = ProxyPool(name=POOL_NAME)
        storage.save_pool(pool)
        storage.add_proxies_bulk(
            [
                Proxy(
                    host=f"10.1.{i // 250}.{i % 250 + 1}",
                    port=8000 + i,
                    protocol=ProxyProtocol.HTTP,
                    pool_id=pool.id,
                    status=ProxyStatus.ACTIVE,
                    max_concurrency=max_concurrency,
                )
                for i in range(size)
            ]
        )
    finally:
        storage.client.close()


def audit_pool(target: RedisTarget, prefix: str, max_concurrency: int) -> Audit:
    """Replay the stored leases of a window on the server's clock."""
    storage = RedisStorage.from_url(
        target.url, prefix=prefix, lease_retention_seconds=RETENTION_SECONDS
    )
    try:
        leases = storage.list_leases()
    finally:
        storage.client.close()
    intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    audit = Audit(leases=len(leases))
    for lease in leases:
        if lease.status is not LeaseStatus.RELEASED or lease.released_at is None:
            audit.unreleased += 1
            continue
        intervals[str(lease.proxy_id)].append((lease.acquired_at, lease.released_at))
    audit.peak = max((max_overlap(v) for v in intervals.values()), default=0)
    audit.excess = max(0, audit.peak - max_concurrency)
    return audit


def wanted_kinds(settings: Settings) -> list[str]:
    """Return the kinds of window the sections asked for, in their order."""
    kinds: list[str] = []
    if settings.runs("floor"):
        kinds += FLOOR_KINDS
    if settings.runs("workers"):
        kinds += ("fast", "stock")
    kinds += [kind for kind in ("rotate", "batch") if settings.runs(kind)]
    return kinds


def batch_pool_size(settings: Settings) -> int:
    """The batch windows' pool: big enough for a full batch per worker at every count."""
    return max(settings.worker_pool_size, BATCH_SIZE * max(settings.processes))


def plan(settings: Settings, kinds: list[str], processes: int, target: RedisTarget) -> list[Phase]:
    """Return the windows of one process count, seeding a fresh pool per manager window."""
    phases = []
    for r in range(settings.rounds):
        for kind in kinds if r % 2 == 0 else reversed(kinds):
            prefix = ""
            if kind in MANAGER_KINDS:
                prefix = target.fresh_prefix(f"w{processes}-{kind}")
                size = batch_pool_size(settings) if kind == "batch" else settings.worker_pool_size
                seed_pool(target, prefix, size, settings.max_concurrency)
            phases.append(Phase(kind, r, prefix))
    return phases


@dataclass(frozen=True)
class ServerSpent:
    """What the Redis server spent during one window (until every report was in)."""

    command_usec: int  # INFO commandstats usec: command time, Lua included
    cpu_seconds: float  # INFO cpu: the redis-server process's user + system CPU


def run_processes(
    target: RedisTarget, phases: list[Phase], processes: int, seconds: float
) -> tuple[list[dict[str, Any]], list[ServerSpent]]:
    """Start ``processes`` spawn workers, release them phase by phase, collect the reports.

    Also returns, per phase, what the server spent from the window's start until every
    report was in.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker_main,
            name=f"bench-worker-{i}",
            args=(i, target.url, phases, seconds, barrier, results),
            daemon=True,
        )
        for i in range(processes)
    ]
    reports: list[dict[str, Any]] = []
    spent: list[ServerSpent] = []
    try:
        for proc in procs:
            proc.start()
        for phase in phases:
            barrier.wait(timeout=START_TIMEOUT)
            usec_before, cpu_before = target.server_usec(), target.server_cpu()
            for _ in range(processes):
                report = results.get(timeout=seconds + START_TIMEOUT)
                if "fatal" in report:
                    raise RuntimeError(f"worker failed in {phase.kind}: {report['fatal']}")
                reports.append(report)
            usec, cpu = target.server_usec() - usec_before, target.server_cpu() - cpu_before
            spent.append(ServerSpent(usec, cpu))
        for proc in procs:
            proc.join(timeout=30)
    except (queue_module.Empty, threading.BrokenBarrierError) as exc:
        codes = {p.name: p.exitcode for p in procs}
        raise RuntimeError(f"workers stopped answering ({exc!r}); exit codes {codes}") from exc
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        results.close()
        results.join_thread()
    return reports, spent


def run_workers(
    settings: Settings, target: RedisTarget, say: Callable[[str], None]
) -> WorkersResult:
    result = WorkersResult(
        max_concurrency=settings.max_concurrency,
        pool_size=settings.worker_pool_size,
        batch_pool_size=batch_pool_size(settings),
    )
    kinds = []
    for kind in wanted_kinds(settings):
        why_not = kind_available(kind)
        if why_not is None:
            kinds.append(kind)
        else:
            result.unavailable[kind] = why_not
            say(f"  {why_not}")
    for n in settings.processes:
        phases = plan(settings, kinds, n, target)
        reports, spent = run_processes(target, phases, n, settings.seconds)
        for phase, server in zip(phases, spent, strict=True):
            mine = [r for r in reports if r["kind"] == phase.kind and r["round"] == phase.round]
            config = result.configs.setdefault((n, phase.kind), ConfigResult(n, phase.kind))
            config.rates.append(sum(r["units"] / r["elapsed"] for r in mine if r["elapsed"] > 0))
            units = sum(r["units"] for r in mine)
            if units:
                config.server_us.append(server.command_usec / units)
                config.redis_cpu_us.append(server.cpu_seconds * 1e6 / units)
                config.client_cpu_us.append(sum(r["cpu"] for r in mine) * 1e6 / units)
            for r in mine:
                config.latencies.extend(r["latencies"])
                config.units += r["units"]
                config.misses += r["misses"]
                config.errors.update(r["errors"])
                for name, message in r["messages"].items():
                    config.messages.setdefault(name, message)
            if phase.prefix:
                audit = audit_pool(target, phase.prefix, settings.max_concurrency)
                granted = sum(r["units"] + r["warm_units"] for r in mine)
                if audit.leases != granted:
                    result.notes.append(
                        f"{n} processes, {KIND_NAMES[phase.kind]}, round {phase.round}: "
                        f"{audit.leases} lease records for {granted} granted leases"
                    )
                previous = config.audit or Audit()
                config.audit = Audit(
                    previous.leases + audit.leases,
                    previous.unreleased + audit.unreleased,
                    max(previous.peak, audit.peak),
                    max(previous.excess, audit.excess),
                )
                target.drop_prefix(phase.prefix)
        for kind in (*FLOOR_KINDS, *MANAGER_KINDS):
            done = result.get(n, kind)
            if done is not None:
                say(describe(done))
    return result


def describe(config: ConfigResult) -> str:
    p50 = f"{config.p50 * 1e6:,.0f}" if config.p50 is not None else "-"
    p99 = f"{config.p99 * 1e6:,.0f}" if config.p99 is not None else "-"
    server = config.server_us_per_op
    line = (
        f"  {config.processes} proc  {KIND_NAMES[config.kind]:<34} {config.rate:>9,.0f}/s  "
        f"p50 {p50} us  p99 {p99} us  server {server or 0:.0f} us/op  "
        f"CPU client {config.client_cpu_us_per_op or 0:.0f} us, "
        f"redis {config.redis_cpu_us_per_op or 0:.0f} us"
    )
    if config.kind in MANAGER_KINDS:
        audit = config.audit or Audit()
        line += (
            f"  misses {config.misses}  exceptions {dict(config.errors) or 0}  "
            f"peak {audit.peak}/proxy"
        )
    return line
