"""Workers killed while they hold leases: the leases come back after their duration.

Eight ``spawn`` processes lease from one pool on a private redis-server; three take a 2 s
lease each and are killed with SIGKILL. The five survivors keep being granted leases, and
the dead workers' proxies are free again only once their leases have expired on the
server's clock, not earlier, and promptly after. The test ends with a clean audit.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from pharox import Lease, LeaseStatus

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer

from ..helpers import seed_pool, server_now
from ..helpers.faults import RETENTION, connect, peak_per_proxy
from ..helpers.fleet import Fleet
from ..helpers.workers import lease_worker, victim

pytestmark = pytest.mark.real_redis

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
    with RedisServer() as server, Fleet(KILL_WORKERS) as fleet:
        storage = connect(server.url, opened, prefix="kill")
        pool = seed_pool(storage, KILL_PROXIES, max_concurrency=1)
        survivors = [
            fleet.spawn(
                f"survivor-{i}",
                lease_worker,
                "redis",
                i,
                server.url,
                "kill",
                pool.name,
                SURVIVOR_SECONDS,
                lease_seconds=KILL_LEASE_SECONDS,
                retention=RETENTION,
                idle=0.001,  # all proxies taken: let the others run
            )
            for i in range(KILL_WORKERS - VICTIMS)
        ]
        victims = [
            fleet.spawn(
                f"victim-{i}",
                victim,
                i,
                server.url,
                "kill",
                pool.name,
                KILL_LEASE_SECONDS,
                retention=RETENTION,
            )
            for i in range(VICTIMS)
        ]
        fleet.start()
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
        exit_codes = fleet.join(victims)
        killed_at = server_now(storage.client)
        assert exit_codes == [-signal.SIGKILL] * VICTIMS

        # Right after the kill the dead leases are still active and counted.
        assert killed_at < min(x.expires_at for x in held), "the check came too late"
        for lease in held:
            stored = storage.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.ACTIVE
        stats = storage.get_pool_stats(pool.name)
        assert stats is not None and stats.leased_proxies >= VICTIMS, stats

        reports = fleet.collect(len(survivors), timeout=SURVIVOR_SECONDS + 60)
        assert fleet.join(survivors) == [0] * len(survivors)

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
