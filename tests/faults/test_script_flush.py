"""``FUNCTION FLUSH`` and ``SCRIPT FLUSH``, again and again, while threads and tasks lease.

Sync threads and asyncio tasks acquire and release while a third client flushes the
library (storages calling ``FCALL``) or the scripts (storages told ``functions=False``, as
on Redis < 7) every 20 ms or every 2 ms: every script call that meets "Function not found"
or NOSCRIPT reloads and is re-sent, no acquire or release fails, nothing is granted twice,
and the audit is clean.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
import redis
from pharox import Proxy, ProxyFilters

from pharox_redis import AsyncRedisProxyManager, AsyncRedisStorage, RedisProxyManager, RedisStorage
from pharox_redis.server import RedisServer

from ..helpers import seed_pool
from ..helpers.faults import (
    RETENTION,
    SELECTORS,
    LoopReport,
    all_errors,
    cmdstat,
    connect,
    join_all,
    lease_loop,
    peak_per_proxy,
    run_threads,
)

pytestmark = pytest.mark.real_redis

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
@pytest.mark.parametrize("functions", [True, False], ids=["function-flush", "script-flush"])
def test_flush_mid_run_fails_no_acquire(
    pause: float, functions: bool, opened: list[RedisStorage]
) -> None:
    """``FUNCTION FLUSH`` (``SCRIPT FLUSH``) again and again while threads and tasks lease.

    One thread leases through a Python predicate (the compare-and-lease script), the
    others through the one-call acquire. Every "Function not found" (NOSCRIPT) is answered
    by loading the library (the script) and sending the batch again; nothing fails,
    nothing is granted twice. Every 2 ms, a flush often lands between a reload and the
    re-send, and several clients load the library at once (all but one are told it
    exists): a client must still get its script run.
    """
    started = time.monotonic()
    load, call = ("function|load", "fcall") if functions else ("script|load", "evalsha")
    with RedisServer() as server:
        direct = connect(server.url, opened, functions=functions)
        pool = seed_pool(direct, FLUSH_PROXIES, max_concurrency=1)
        flusher = redis.Redis.from_url(server.url)
        stop = threading.Event()
        flushes = 0

        def flush() -> None:
            nonlocal flushes
            while not stop.is_set():
                if functions:
                    flusher.function_flush()
                else:
                    flusher.script_flush()
                flushes += 1
                time.sleep(pause)

        sync_reports = [LoopReport(f"sync-{i}") for i in range(3)]
        async_reports = [LoopReport(f"async-{i}") for i in range(2)]
        managers = [
            RedisProxyManager(connect(server.url, opened, functions=functions))
            for _ in sync_reports
        ]
        filters = [None, None, ProxyFilters(predicate=odd_port)]
        async_storage = AsyncRedisStorage.from_url(
            server.url, prefix="faults", lease_retention_seconds=RETENTION, functions=functions
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
        loads = cmdstat(direct, load).get("calls", 0)
        lost = cmdstat(direct, call).get("failed_calls", 0)  # "Function not found", NOSCRIPT
        other = cmdstat(direct, "evalsha" if functions else "fcall").get("calls", 0)
        leases = {str(x.id): x for x in direct.list_leases()}
        granted = [lid for r in reports for lid, _ in r.granted]
        errors = all_errors(reports)
        peaks = peak_per_proxy(leases.values())
        print(
            f"\n{load.partition('|')[0]} flush every {pause * 1000:.0f} ms: flushes={flushes} "
            f"lost={lost} loads={loads} granted={[len(r.granted) for r in reports]} "
            f"none={sum(r.none for r in reports)} errors={dict(errors)} "
            f"peak per proxy={sorted(peaks.values())} elapsed={time.monotonic() - started:.1f}s"
        )
        for r in reports:
            for lease in r.unreleased:
                managers[0].release_proxy(lease)

        assert not errors, [(r.name, r.messages) for r in reports if r.messages]
        assert flushes > 30 and loads > 20, (flushes, loads)  # the reload path was taken
        assert lost > 20 and other == 0, (lost, other)  # no client changed its way of calling
        assert all(len(r.granted) > 10 for r in reports), [len(r.granted) for r in reports]
        ports = {str(p.id): p.port for p in direct.list_proxies(str(pool.id))}
        assert all(ports[pid] % 2 == 1 for _, pid in sync_reports[2].granted)
        assert len(granted) == len(set(granted)) and set(granted) == set(leases)
        assert all(peak <= 1 for peak in peaks.values()), peaks
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report
