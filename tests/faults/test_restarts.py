"""Redis restarted mid-run, with and without persistence.

With AOF (``appendfsync always``) and SIGKILL: clients from ``RedisStorage.from_url``
reconnect by themselves (redis-py's ``Retry``), find the function library in the AOF (a
library is persisted like data; scripts loaded for ``EVALSHA`` are not, and are loaded again
through the NOSCRIPT path), grant no proxy twice, and every lease granted before the restart
is still there after it. Without persistence the pool is gone, and the client says so in
pharox's terms (``None`` from an acquire, as for any unknown pool, ``PoolNotFoundError``,
``LeaseLostError``), never with a raw Redis error. Each test ends with a clean audit.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from pharox import LeaseStatus, PoolNotFoundError, ProxyManager, ProxyNotFoundError

from pharox_redis import LeaseLostError, RedisProxyManager, RedisStorage
from pharox_redis.server import RedisServer

from ..helpers import seed_pool, server_now
from ..helpers.faults import (
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

    The leasing threads' clients reconnect by themselves, call the library the AOF brought
    back (no "Function not found", no load) and are granted leases again; no proxy was
    ever held twice; every lease granted before the restart, whether released or still
    held, is still stored after it.
    """
    started = time.monotonic()
    with RedisServer(tcp=True, appendonly=True) as server:
        direct = connect(server.url, opened)
        pool = seed_pool(direct, RESTART_PROXIES, max_concurrency=1)
        holder = RedisProxyManager(connect(server.url, opened))
        held = [holder.acquire_proxy(pool.name, "holder", 60) for _ in range(HELD_ACROSS)]
        assert all(x is not None for x in held)
        held_leases = [x for x in held if x is not None]

        stop = threading.Event()
        reports = [LoopReport(f"restart-{i}") for i in range(RESTART_THREADS)]
        managers = [RedisProxyManager(connect(server.url, opened)) for _ in reports]
        threads = run_threads(
            [partial(lease_loop, m, r, stop, 30) for m, r in zip(managers, reports, strict=True)]
        )
        try:
            time.sleep(RESTART_AFTER)
            before = sum(len(r.granted) for r in reports)
            restart_began = time.monotonic()
            server.restart(kill=True)
            restart_seconds = time.monotonic() - restart_began
            restarted_at = server_now(direct.client)
            time.sleep(RUN_AFTER_RESTART)
        finally:
            stop.set()
            join_all(threads)
        reloads = cmdstat(direct, "function|load").get("calls", 0)
        fcall = cmdstat(direct, "fcall")

        for r in reports:  # a release that failed leaves its lease to expire: release it now
            for lease in r.unreleased:
                holder.release_proxy(lease)
        leases = {str(x.id): x for x in direct.list_leases()}
        granted = {lid for r in reports for lid, _ in r.granted}
        failed = {lid for r in reports for lid in r.failed_ids}
        errors = all_errors(reports)
        peaks = peak_per_proxy(leases.values())
        after = [
            sum(leases[lid].acquired_at > restarted_at for lid, _ in r.granted) for r in reports
        ]
        print(
            f"\nrestart: granted={len(granted)} ({before} before the restart) "
            f"after per thread={after} none={sum(r.none for r in reports)} "
            f"errors={dict(errors)} restart took {restart_seconds:.3f}s "
            f"library loads={reloads} fcall={fcall} peak per proxy={sorted(peaks.values())} "
            f"elapsed={time.monotonic() - started:.1f}s"
        )

        if restart_seconds < RETRY_WINDOW:
            assert not errors, [r.messages for r in reports]
        else:  # a restart slower than the retry window may fail calls, only as outages
            assert set(errors) <= {"RedisStorageError(ConnectionError)"}, errors
        assert before > 0 and all(n > 0 for n in after), (before, after)
        # The library came back with the AOF: every call found it (commandstats restart at 0).
        assert reloads == 0 and fcall["calls"] > 0 and fcall.get("failed_calls", 0) == 0, fcall
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
    raises ``LeaseLostError`` and releasing it is a no-op: never a raw Redis error. The
    library is gone too: the first call loads it again. Saving the pool again brings leasing
    back.
    """
    with RedisServer(tcp=True) as server:
        storage = connect(server.url, opened)
        manager = RedisProxyManager(storage)
        pool = seed_pool(storage, 1, max_concurrency=1)
        (proxy,) = storage.list_proxies(str(pool.id))
        lease = manager.acquire_proxy(pool.name, "w", 60)
        assert lease is not None

        server.restart(kill=True)
        assert storage.client.function_list() == []

        assert manager.acquire_proxy(pool.name, "w", 60) is None
        assert cmdstat(storage, "function|load")["calls"] == 1
        assert cmdstat(storage, "fcall")["failed_calls"] == 1  # "Function not found", once
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
