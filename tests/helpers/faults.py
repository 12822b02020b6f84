"""Helpers of the fault tests: storages on a private server, leasing loops, what Redis ran.

* :func:`connect` builds a storage as ``from_url`` does (its default retry policy), with a
  retention long enough that no released lease record is purged before a test reads it;
* :func:`lease_loop` acquires (every selector in turn) and releases until stopped, recording
  in a :class:`LoopReport` what it was granted and every error, by type and cause;
* :func:`peak_per_proxy` replays the stored lease records on the server's clock;
* :func:`cmdstat` reads ``INFO commandstats`` (script reloads, NOSCRIPT answers);
* :func:`busy_cpus` keeps every CPU busy; :func:`wait_for_proxy` and :func:`other_worker`
  are another worker polling for a proxy, and say when it got it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from pharox import Lease, ProxyFilters, ProxyPool, SelectorStrategy

from benchmarks.stats import max_overlap  # the benchmarks audit leases the same way
from pharox_redis import RedisProxyManager, RedisStorage, RedisStorageError

RETENTION = 3600.0  # no released lease record may be purged before a test reads it back
SELECTORS = tuple(SelectorStrategy)
FAR_FUTURE = datetime.max.replace(tzinfo=timezone.utc)


def connect(url: str, opened: list[RedisStorage], **options: Any) -> RedisStorage:
    """A storage as ``from_url`` builds it (default retry policy), closed at teardown.

    ``opened`` is the ``opened`` fixture: the storages it holds are closed after the test.
    """
    options.setdefault("prefix", "faults")
    options.setdefault("lease_retention_seconds", RETENTION)
    storage = RedisStorage.from_url(url, **options)
    opened.append(storage)
    return storage


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
    """What one leasing thread (or task) saw."""

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


def all_errors(reports: Iterable[LoopReport]) -> Counter[str]:
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report.errors)
    return errors


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


@contextmanager
def busy_cpus(count: Optional[int] = None) -> Iterator[None]:
    """Keep every CPU busy (two spinning processes per core) for the block."""
    procs = [
        multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        for _ in range(count or 2 * (os.cpu_count() or 1))
    ]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.join(5)


def _spin() -> None:
    while True:
        pass


def wait_for_proxy(storage: RedisStorage, pool: ProxyPool, limit: float) -> Optional[float]:
    """Poll another worker's acquire every 5 ms; return the monotonic time it got the proxy."""
    other = RedisProxyManager(storage)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if other.acquire(pool.name, consumer_name="other", duration_seconds=60) is not None:
            return time.monotonic()
        time.sleep(0.005)
    return None


class Other(threading.Thread):
    """Another worker, polling for a pool's proxy from a thread of its own."""

    def __init__(self, url: str, prefix: str, pool: ProxyPool, limit: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.storage = RedisStorage.from_url(url, prefix=prefix)
        self.pool, self.limit = pool, limit
        self.got_at: Optional[float] = None

    def run(self) -> None:
        self.got_at = wait_for_proxy(self.storage, self.pool, self.limit)


def other_worker(url: str, prefix: str, pool: ProxyPool) -> Other:
    """Start another worker polling for the pool's proxy; ``got_at`` says when it got it."""
    worker = Other(url, prefix, pool)
    worker.start()
    return worker
