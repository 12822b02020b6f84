"""Section 10: a contended fleet polling for a proxy against the same fleet waiting (T9).

``WAIT_PROCESSES`` ``spawn`` worker processes share a pool of ``WAIT_PROXIES`` proxies with
``max_concurrency=1`` (twice as many workers as proxies) and loop acquire - hold
``--wait-hold`` seconds - release for a timed window, two ways:

* ``polling``: pharox's ``acquire_proxy_with_retry`` on ``RedisProxyManager``, a fixed
  ``POLL_SECONDS`` sleep between attempts (as a fleet polls today);
* ``waiting``: ``acquire(..., wait=)``: the worker joins the pool's wait queue and is handed
  a proxy on release, first come first served.

For each: leases/s, the p50 and p99 of the time an acquire took (until it returned a lease),
the Redis commands per lease from ``INFO commandstats`` (script calls, and the commands the
scripts ran, with pub/sub), Jain's fairness index of the leases per worker, and the most
holders any proxy had at once (from the stored lease records, on the server's clock).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus, RetryConfig

from pharox_redis import RedisProxyManager, RedisStorage

from .commandstats import Work, difference, snapshot
from .markdown import rate, table
from .redis_target import RedisTarget
from .settings import Settings
from .stats import max_overlap, percentile

WAIT_PROCESSES = 8
WAIT_PROXIES = 4
POLL_SECONDS = 0.01  # the polling fleet's fixed sleep between attempts
WAIT_SECONDS = 10.0  # the waiting fleet's wait (and the polling fleet's patience)
LEASE_SECONDS = 30.0
RETENTION_SECONDS = 3600.0  # every lease record is kept until the overlap check
START_TIMEOUT = 120.0
POOL_NAME = "bench-waiting"
MODES = ("polling", "waiting")


def jain_index(counts: list[int]) -> float:
    """Jain's fairness index: 1.0 when every worker got as many, 1/n when one got all."""
    squares = sum(c * c for c in counts)
    return 0.0 if squares == 0 else sum(counts) ** 2 / (len(counts) * squares)


@dataclass
class FleetRun:
    """One mode's window: what the workers got and what Redis did for it."""

    mode: str
    seconds: float
    per_worker: list[int]
    waits: list[float]  # seconds each granted acquire took
    misses: int  # acquires that gave up (None)
    errors: int
    work: Work
    overlap: int  # most holders of one proxy at once

    @property
    def leases(self) -> int:
        return sum(self.per_worker)

    @property
    def leases_per_second(self) -> float:
        return self.leases / self.seconds if self.seconds > 0 else 0.0

    @property
    def commands_per_lease(self) -> float:
        """Commands Redis ran per lease: script calls and the data commands (scripts' too)."""
        return (self.work.script_runs + self.work.calls) / self.leases if self.leases else 0.0

    @property
    def fairness(self) -> float:
        return jain_index(self.per_worker)


@dataclass
class WaitingResult:
    """The polling and the waiting fleet, side by side."""

    runs: dict[str, FleetRun] = field(default_factory=dict)
    hold: float = 0.0
    notes: list[str] = field(default_factory=list)


def _worker(
    mode: str, url: str, prefix: str, seconds: float, hold: float, ready: Any, go: Any, out: Any
) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=RETENTION_SECONDS)
    manager = RedisProxyManager(storage)
    polling = RetryConfig(
        max_attempts=int(WAIT_SECONDS / POLL_SECONDS) + 1,
        backoff_seconds=POLL_SECONDS,
        backoff_multiplier=1.0,
    )
    warm = manager.acquire(POOL_NAME, duration_seconds=LEASE_SECONDS)  # names, library
    if warm is not None:
        manager.release_proxy(warm)
    ready.wait(START_TIMEOUT)
    go.wait(START_TIMEOUT)
    waits: list[float] = []
    misses = errors = 0
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        asked = time.monotonic()
        try:
            if mode == "waiting":
                leased = manager.acquire(
                    POOL_NAME, duration_seconds=LEASE_SECONDS, wait=WAIT_SECONDS
                )
                lease = None if leased is None else leased.lease
            else:
                lease = manager.acquire_proxy_with_retry(
                    POOL_NAME, duration_seconds=LEASE_SECONDS, retry_config=polling
                )
        except Exception:  # counted: the report says how many
            errors += 1
            continue
        if lease is None:
            misses += 1
            continue
        waits.append(time.monotonic() - asked)
        time.sleep(hold)
        manager.release_proxy(lease)
    out.put(
        {"waits": waits, "misses": misses, "errors": errors, "seconds": time.monotonic() - started}
    )
    storage.client.close()


def _seed(storage: RedisStorage) -> None:
    pool = ProxyPool(name=POOL_NAME)
    storage.save_pool(pool)
    storage.add_proxies_bulk(
        [
            Proxy(
                host=f"10.8.0.{i + 1}",
                port=8000 + i,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=ProxyStatus.ACTIVE,
                max_concurrency=1,
            )
            for i in range(WAIT_PROXIES)
        ]
    )


def _run(target: RedisTarget, mode: str, seconds: float, hold: float) -> FleetRun:
    with target.storage(f"waiting-{mode}", lease_retention_seconds=RETENTION_SECONDS) as storage:
        _seed(storage)
        spawn = multiprocessing.get_context("spawn")
        ready, go = spawn.Barrier(WAIT_PROCESSES + 1), spawn.Barrier(WAIT_PROCESSES + 1)
        out = spawn.Queue()
        procs = [
            spawn.Process(
                target=_worker,
                args=(mode, target.url, storage.context.keys.prefix, seconds, hold, ready, go, out),
            )
            for _ in range(WAIT_PROCESSES)
        ]
        for proc in procs:
            proc.start()
        try:
            ready.wait(START_TIMEOUT)
            before = snapshot(target.admin)
            go.wait(START_TIMEOUT)
            reports = [out.get(timeout=START_TIMEOUT + seconds + WAIT_SECONDS) for _ in procs]
            after = snapshot(target.admin)
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
        per_worker = [len(r["waits"]) for r in reports]
        spans: dict[str, list[tuple[Any, Any]]] = {}
        for lease in storage.list_leases():
            spans.setdefault(str(lease.proxy_id), []).append((lease.acquired_at, lease.released_at))
        return FleetRun(
            mode=mode,
            seconds=max(r["seconds"] for r in reports),
            per_worker=per_worker,
            waits=[w for r in reports for w in r["waits"]],
            misses=sum(r["misses"] for r in reports),
            errors=sum(r["errors"] for r in reports),
            work=difference(before, after, sum(per_worker)),
            overlap=max((max_overlap(s) for s in spans.values()), default=0),
        )


def run_waiting(
    settings: Settings, target: RedisTarget, say: Callable[[str], None]
) -> WaitingResult:
    """Run the polling fleet, then the waiting fleet, on the same server."""
    result = WaitingResult(hold=settings.wait_hold)
    if not target.private:
        result.notes.append(
            "section 10 ran on --redis-url: other clients' commands count too (commandstats "
            "is server-wide)"
        )
    for mode in MODES:
        run = _run(target, mode, settings.wait_window, settings.wait_hold)
        result.runs[mode] = run
        say(
            f"  {mode}: {run.leases_per_second:,.0f} leases/s, p50 "
            f"{_ms(percentile(run.waits, 50))} ms, p99 {_ms(percentile(run.waits, 99))} ms, "
            f"{run.commands_per_lease:.1f} commands/lease, Jain {run.fairness:.3f}, "
            f"{run.misses} misses, {run.errors} errors, overlap {run.overlap}"
        )
    return result


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def waiting_lines(w: WaitingResult, settings: Settings) -> list[str]:
    """Return the report's lines for this section."""
    lines = [
        "## 10. Waiting for a proxy against polling",
        "",
        f"{WAIT_PROCESSES} processes on {WAIT_PROXIES} proxies with max_concurrency=1, each "
        f"looping acquire - hold {w.hold * 1000:g} ms - release for {settings.wait_window:g} s. "
        f"Polling: `acquire_proxy_with_retry` sleeping {POLL_SECONDS * 1000:g} ms between "
        f"attempts; waiting: `acquire(..., wait={WAIT_SECONDS:g})`. Wait = how long an acquire "
        "took until it returned a lease. Commands per lease: script calls plus every data "
        "command Redis ran (the scripts' own, pub/sub included), from `INFO commandstats`. "
        "Fairness: Jain's index of the leases per worker (1.0 = equal shares).",
        "",
    ]
    rows = []
    for mode in MODES:
        run = w.runs.get(mode)
        if run is None:
            continue
        rows.append(
            [
                mode,
                rate(run.leases_per_second),
                _ms(percentile(run.waits, 50)),
                _ms(percentile(run.waits, 99)),
                f"{run.commands_per_lease:.1f}",
                f"{run.work.script_runs / run.leases:.1f}" if run.leases else "-",
                f"{run.fairness:.3f}",
                f"{min(run.per_worker)}-{max(run.per_worker)}",
                f"{run.misses}",
                f"{run.overlap}",
            ]
        )
    header = [
        "mode",
        "leases/s",
        "wait p50 ms",
        "wait p99 ms",
        "commands/lease",
        "script calls/lease",
        "Jain's index",
        "leases per worker",
        "gave up",
        "most holders of a proxy",
    ]
    return lines + table(header, rows)
