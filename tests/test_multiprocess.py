"""Many processes lease from one pool; no proxy is ever held by more than max_concurrency.

Eight ``spawn`` processes run pharox's stock ``ProxyManager`` on their own ``RedisStorage``
against a private redis-server for a few seconds, acquiring and releasing as fast as they
can. The audit then replays the server-stamped ``[acquired_at, released_at)`` interval of
every lease and checks the peak number of open leases per proxy.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pharox import (
    LeaseStatus,
    ProxyManager,
    ProxyUnavailableError,
    SelectorStrategy,
)

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer

from .helpers import make_pool, make_proxy

WORKERS = 8
PROXIES = 4
MAX_CONCURRENCY = 2
RUN_SECONDS = 3.0
LEASE_SECONDS = 30
START_TIMEOUT = 30.0
RESULT_TIMEOUT = 30.0
SELECTORS = tuple(SelectorStrategy)


def max_overlap(intervals: Iterable[tuple[Any, Any]]) -> int:
    """Return the most half-open ``[start, end)`` intervals open at the same moment.

    An interval ending at t and another starting at t do not overlap: at equal times the
    end is processed first.
    """
    events: list[tuple[Any, int]] = []
    for start, end in intervals:
        if end < start:
            raise ValueError(f"interval ends before it starts: {start!r} > {end!r}")
        events.append((start, 1))
        events.append((end, -1))
    events.sort()  # (t, -1) sorts before (t, +1)
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def lease_worker(
    index: int,
    url: str,
    prefix: str,
    pool_name: str,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """Acquire and release in a loop for ``seconds``; put the counts on ``results``."""
    out: dict[str, Any] = {
        "worker": index,
        "attempts": 0,
        "granted": 0,
        "none": 0,
        "errors": Counter(),
        "messages": {},
        "lease_ids": [],
        "selectors": Counter(),
    }
    storage = None
    try:
        storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=600)
        manager = ProxyManager(storage)
        rng = random.Random(index)
        barrier.wait(timeout=START_TIMEOUT)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            selector = SELECTORS[(index + n) % len(SELECTORS)]
            n += 1
            out["attempts"] += 1
            out["selectors"][selector.value] += 1
            try:
                lease = manager.acquire_proxy(
                    pool_name,
                    consumer_name=f"worker-{index}",
                    duration_seconds=LEASE_SECONDS,
                    selector=selector,
                )
                if lease is None:
                    out["none"] += 1
                    continue
                out["granted"] += 1
                out["lease_ids"].append(str(lease.id))
                time.sleep(rng.uniform(0, 0.003))
                manager.release_proxy(lease)
            except Exception as exc:  # counted and reported, never fatal
                name = type(exc).__name__
                out["errors"][name] += 1
                out["messages"].setdefault(name, repr(exc)[:300])
    except BaseException as exc:  # setup failed: report it instead of hanging the parent
        out["errors"]["setup:" + type(exc).__name__] += 1
        out["messages"].setdefault("setup:" + type(exc).__name__, repr(exc)[:300])
    finally:
        if storage is not None:
            storage.client.close()
        out["errors"] = dict(out["errors"])
        out["selectors"] = dict(out["selectors"])
        results.put(out)


def test_max_overlap_counts_simultaneous_intervals() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def at(ms: int) -> datetime:
        return t0 + timedelta(milliseconds=ms)

    triple = [(at(0), at(10)), (at(2), at(8)), (at(5), at(6)), (at(20), at(30))]
    assert max_overlap(triple) == 3
    # touching intervals are not simultaneous
    assert max_overlap([(at(0), at(5)), (at(5), at(10)), (at(10), at(15))]) == 1
    assert max_overlap([(0, 4), (1, 5), (2, 6), (4, 7)]) == 3
    assert max_overlap([]) == 0
    with pytest.raises(ValueError):
        max_overlap([(5, 1)])


def _run_workers(url: str, prefix: str, pool_name: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=lease_worker,
            name=f"lease-worker-{i}",
            args=(i, url, prefix, pool_name, RUN_SECONDS, barrier, results),
        )
        for i in range(WORKERS)
    ]
    out: list[dict[str, Any]] = []
    try:
        for proc in procs:
            proc.start()
        barrier.wait(timeout=START_TIMEOUT)
        deadline = time.monotonic() + RUN_SECONDS + RESULT_TIMEOUT
        while len(out) < WORKERS:
            try:
                out.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue_module.Empty:
                codes = {p.name: p.exitcode for p in procs}
                pytest.fail(f"only {len(out)}/{WORKERS} workers reported; exit codes {codes}")
        for proc in procs:
            proc.join(timeout=10)
    except threading.BrokenBarrierError:
        codes = {p.name: p.exitcode for p in procs}
        pytest.fail(f"workers did not all start; exit codes {codes}")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        results.close()
        results.join_thread()
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return out


@pytest.mark.real_redis
@pytest.mark.slow
def test_concurrent_processes_never_exceed_max_concurrency(redis_server: RedisServer) -> None:
    started = time.monotonic()
    prefix = f"mp{uuid.uuid4().hex[:10]}"
    pool_name = f"pool-{prefix}"
    storage = RedisStorage.from_url(redis_server.url, prefix=prefix, lease_retention_seconds=600)
    try:
        pool = make_pool(storage, pool_name)
        proxies = [make_proxy(pool, i, max_concurrency=MAX_CONCURRENCY) for i in range(PROXIES)]
        storage.add_proxies_bulk(proxies)

        reports = _run_workers(redis_server.url, prefix, pool_name)

        attempts = sum(r["attempts"] for r in reports)
        granted = sum(r["granted"] for r in reports)
        nones = sum(r["none"] for r in reports)
        errors: Counter[str] = Counter()
        messages: dict[str, str] = {}
        for r in reports:
            errors.update(r["errors"])
            for name, message in r["messages"].items():
                messages.setdefault(name, message)
        reported_ids = [lid for r in reports for lid in r["lease_ids"]]

        # --- audit on the server's clock
        leases = storage.list_leases()
        by_id = {str(lease.id): lease for lease in leases}
        intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        unreleased = []
        for lease in leases:
            if lease.status is not LeaseStatus.RELEASED or lease.released_at is None:
                unreleased.append(lease)
                continue
            intervals[str(lease.proxy_id)].append((lease.acquired_at, lease.released_at))
        overlap = {
            pid: max_overlap(intervals[pid]) for pid in sorted(map(str, (p.id for p in proxies)))
        }
        per_proxy = {pid: len(intervals[pid]) for pid in overlap}

        summary = (
            f"workers={WORKERS} attempts={attempts} granted={granted} none={nones} "
            f"errors={dict(errors)} max_overlap={list(overlap.values())} "
            f"leases_per_proxy={list(per_proxy.values())} "
            f"elapsed={time.monotonic() - started:.1f}s"
        )
        print("\n" + summary)
        if messages:
            print(f"first exception of each type: {messages}")

        assert granted > 200, summary
        assert set(errors) <= {ProxyUnavailableError.__name__}, (summary, messages)
        assert len(reported_ids) == granted == len(set(reported_ids)), summary
        missing = [lid for lid in reported_ids if lid not in by_id]
        assert not missing, f"{len(missing)} reported leases are not stored, e.g. {missing[:3]}"
        assert set(by_id) == set(reported_ids), "stored leases nobody reported"
        assert not unreleased, f"{len(unreleased)} leases not released, e.g. {unreleased[:2]}"
        assert set(str(lease.proxy_id) for lease in leases) <= set(overlap)
        assert all(peak <= MAX_CONCURRENCY for peak in overlap.values()), summary
        assert max(overlap.values()) == MAX_CONCURRENCY, f"contention never reached: {summary}"

        stats = storage.get_pool_stats(pool_name)
        assert stats is not None
        assert (stats.total_leases, stats.leased_proxies, stats.available_proxies) == (
            0,
            0,
            PROXIES,
        ), stats
        assert stats.total_proxies == stats.active_proxies == PROXIES, stats
        stored = storage.list_proxies(str(pool.id))
        assert len(stored) == PROXIES
        assert [p.current_leases for p in stored] == [0] * PROXIES
    finally:
        storage.client.close()
