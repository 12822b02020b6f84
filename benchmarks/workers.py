"""Sections 2 and 3: N worker processes on one shared pool, next to the round-trip floor.

For each process count N, N ``spawn`` processes are started once and run a list of timed
windows ("phases"), all starting together on a barrier:

* ``ping`` and ``evalsha``: the floor, Python round trips to the same Redis on the same
  client setup (``RedisStorage.from_url``), PING and EVALSHA of ``return 1``;
* ``stock`` and ``fast``: acquire+release cycles with pharox's stock ``ProxyManager`` and
  with ``RedisProxyManager``, on a pool of their own (a fresh prefix per window).

Windows are repeated ``--rounds`` times, in reversed order every other round; the median
rate counts. The workload mirrors pharox's benchmark: ROUND_ROBIN, release right away.
Afterwards every lease record of a manager window is read back (``list_leases``; the
retention is an hour) and the server-stamped ``[acquired_at, released_at)`` intervals are
replayed to find the peak number of simultaneous leases per proxy.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional, Union

from pharox import (
    LeaseStatus,
    Proxy,
    ProxyManager,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import RedisProxyManager, RedisStorage

from .redis_target import RedisTarget
from .settings import Settings
from .stats import Latencies, max_overlap, median

FLOOR_KINDS = ("evalsha", "ping")
MANAGER_KINDS = ("fast", "stock")
KIND_NAMES = {
    "ping": "PING",
    "evalsha": "EVALSHA return 1",
    "stock": "ProxyManager (stock)",
    "fast": "RedisProxyManager",
}
NOOP_SCRIPT = "return 1"
SELECTOR = SelectorStrategy.ROUND_ROBIN  # pharox's benchmark default
RETENTION_SECONDS = 3600.0  # no lease record may be purged before the audit
START_TIMEOUT = 120.0
POOL_NAME = "bench-workers"


@dataclass(frozen=True)
class Phase:
    kind: str
    round: int
    prefix: str = ""  # manager phases: the pool's key prefix


# ---------------------------------------------------------------------- worker side


def _lease_cycle(manager: Union[ProxyManager, RedisProxyManager], consumer: str) -> bool:
    """One acquire (timed by the caller) and release; True when a lease was granted."""
    lease = manager.acquire_proxy(POOL_NAME, consumer, selector=SELECTOR)
    if lease is None:
        return False
    manager.release_proxy(lease)
    return True


def run_phase(phase: Phase, index: int, url: str, seconds: float, barrier: Any) -> dict[str, Any]:
    """Set up, wait for everyone, run one timed window; return its counts."""
    out: dict[str, Any] = {
        "kind": phase.kind,
        "round": phase.round,
        "worker": index,
        "ops": 0,
        "hits": 0,
        "misses": 0,
        "errors": Counter(),
        "messages": {},
        "latencies": [],
        "elapsed": 0.0,
    }
    storage = RedisStorage.from_url(
        url, prefix=phase.prefix or "bench-floor", lease_retention_seconds=RETENTION_SECONDS
    )
    try:
        client = storage.client
        consumer = f"worker-{index}"
        step: Callable[[], bool]
        if phase.kind == "ping":

            def step() -> bool:
                return bool(client.ping())

        elif phase.kind == "evalsha":
            sha = client.script_load(NOOP_SCRIPT)

            def step() -> bool:
                return bool(client.evalsha(sha, 0) == 1)

        else:
            manager = RedisProxyManager(storage) if phase.kind == "fast" else ProxyManager(storage)

            def step() -> bool:
                return _lease_cycle(manager, consumer)

        out["warm_hits"] = int(step())  # warm up: connection, scripts, pool and consumer ids
        barrier.wait(timeout=START_TIMEOUT)
        latencies: list[float] = out["latencies"]
        clock = time.perf_counter
        began = clock()
        deadline = began + seconds
        while True:
            start = clock()
            if start >= deadline:
                break
            try:
                granted = step()
            except Exception as exc:  # counted by type, never fatal
                name = type(exc).__name__
                out["errors"][name] += 1
                out["messages"].setdefault(name, repr(exc)[:300])
                continue
            latencies.append(clock() - start)
            out["ops"] += 1
            out["hits" if granted else "misses"] += 1
        out["elapsed"] = clock() - began
    finally:
        storage.client.close()
    out["errors"] = dict(out["errors"])
    return out


def worker_main(
    index: int, url: str, phases: list[Phase], seconds: float, barrier: Any, results: Any
) -> None:
    """Run every phase in order, putting one report per phase on ``results``."""
    for phase in phases:
        try:
            report = run_phase(phase, index, url, seconds, barrier)
        except BaseException as exc:  # setup failed: report instead of hanging the parent
            barrier.abort()
            report = {"kind": phase.kind, "round": phase.round, "worker": index, "fatal": repr(exc)}
            results.put(report)
            return
        results.put(report)


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
    rates: list[float] = field(default_factory=list)  # ops/s aggregated over processes
    server_us: list[float] = field(default_factory=list)  # server command time per op
    latencies: list[float] = field(default_factory=list)
    hits: int = 0
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
    def exceptions(self) -> int:
        return sum(self.errors.values())


@dataclass
class WorkersResult:
    configs: dict[tuple[int, str], ConfigResult] = field(default_factory=dict)
    max_concurrency: int = 1
    pool_size: int = 0
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


def plan(settings: Settings, processes: int, target: RedisTarget) -> list[Phase]:
    kinds: list[str] = []
    if settings.runs("floor"):
        kinds += FLOOR_KINDS
    if settings.runs("workers"):
        kinds += MANAGER_KINDS
    phases = []
    for r in range(settings.rounds):
        for kind in kinds if r % 2 == 0 else reversed(kinds):
            prefix = ""
            if kind in MANAGER_KINDS:
                prefix = target.fresh_prefix(f"w{processes}-{kind}")
                seed_pool(target, prefix, settings.worker_pool_size, settings.max_concurrency)
            phases.append(Phase(kind, r, prefix))
    return phases


def run_processes(
    target: RedisTarget, phases: list[Phase], processes: int, seconds: float
) -> tuple[list[dict[str, Any]], list[int]]:
    """Start ``processes`` spawn workers, release them phase by phase, collect the reports.

    Also returns, per phase, the server's command time (``INFO commandstats`` usec) spent
    from the window's start until every report was in.
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
    server_usec: list[int] = []
    try:
        for proc in procs:
            proc.start()
        for phase in phases:
            barrier.wait(timeout=START_TIMEOUT)
            usec_before = target.server_usec()
            for _ in range(processes):
                report = results.get(timeout=seconds + START_TIMEOUT)
                if "fatal" in report:
                    raise RuntimeError(f"worker failed in {phase.kind}: {report['fatal']}")
                reports.append(report)
            server_usec.append(target.server_usec() - usec_before)
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
    return reports, server_usec


def run_workers(
    settings: Settings, target: RedisTarget, say: Callable[[str], None]
) -> WorkersResult:
    result = WorkersResult(
        max_concurrency=settings.max_concurrency, pool_size=settings.worker_pool_size
    )
    for n in settings.processes:
        phases = plan(settings, n, target)
        reports, server_usec = run_processes(target, phases, n, settings.seconds)
        for phase, usec in zip(phases, server_usec, strict=True):
            mine = [r for r in reports if r["kind"] == phase.kind and r["round"] == phase.round]
            config = result.configs.setdefault((n, phase.kind), ConfigResult(n, phase.kind))
            config.rates.append(sum(r["ops"] / r["elapsed"] for r in mine if r["elapsed"] > 0))
            ops = sum(r["ops"] for r in mine)
            if ops:
                config.server_us.append(usec / ops)
            for r in mine:
                config.latencies.extend(r["latencies"])
                config.hits += r["hits"]
                config.misses += r["misses"]
                config.errors.update(r["errors"])
                for name, message in r["messages"].items():
                    config.messages.setdefault(name, message)
            if phase.prefix:
                audit = audit_pool(target, phase.prefix, settings.max_concurrency)
                granted = sum(r["hits"] + r["warm_hits"] for r in mine)
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
        f"  {config.processes} proc  {KIND_NAMES[config.kind]:<21} {config.rate:>9,.0f}/s  "
        f"p50 {p50} us  p99 {p99} us  server {server or 0:.0f} us/op"
    )
    if config.kind in MANAGER_KINDS:
        audit = config.audit or Audit()
        line += (
            f"  misses {config.misses}  exceptions {dict(config.errors) or 0}  "
            f"peak {audit.peak}/proxy"
        )
    return line
