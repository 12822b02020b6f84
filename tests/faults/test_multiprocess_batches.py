"""Many processes rotate and lease in batches from one pool; no proxy exceeds max_concurrency.

``spawn`` processes (:func:`~tests.helpers.workers.batch_worker`), each with its own
``RedisStorage``, on a private redis-server: half hold a lease and ``rotate`` it on every
turn, half take 1-3 leases with ``acquire_many`` (distinct or filled, all-or-nothing or
not) and give them back with ``release_many``; every selector, and the Python-predicate path
every fourth turn. Then, as in ``test_multiprocess.py``, every lease record is read back and
the server-stamped ``[acquired_at, released_at)`` intervals replayed: no proxy was ever held
more than ``max_concurrency`` times at once, every lease granted is stored and released, the
counters are back to zero and the audit finds nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from pharox import LeaseStatus

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer

from ..helpers import seed_pool
from ..helpers.faults import RETENTION, peak_per_proxy
from ..helpers.fleet import Fleet
from ..helpers.workers import SELECTORS, batch_worker

pytestmark = pytest.mark.real_redis

PROXIES = 4
RESULT_TIMEOUT = 30.0


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("max_concurrency", [1, 2])
def test_rotate_and_batch_processes_never_exceed_max_concurrency(
    own_server: RedisServer, max_concurrency: int
) -> None:
    kinds = ["rotate"] * 3 + ["many"] * 3
    seconds = 3.0
    prefix = f"mb{uuid.uuid4().hex[:10]}"
    pool_name = f"pool-{prefix}"
    storage = RedisStorage.from_url(
        own_server.url, prefix=prefix, lease_retention_seconds=RETENTION
    )
    try:
        pool = seed_pool(storage, PROXIES, pool_name, max_concurrency=max_concurrency)
        with Fleet(len(kinds)) as fleet:
            for i, kind in enumerate(kinds):
                args = (kind, i, own_server.url, prefix, pool_name, seconds)
                fleet.spawn(f"batch-worker-{kind}-{i}", batch_worker, *args, retention=RETENTION)
            fleet.start()
            reports = fleet.collect(len(kinds), timeout=seconds + RESULT_TIMEOUT)
            assert fleet.join(fleet.procs) == [0] * len(kinds), fleet.exit_codes()

        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r["errors"])
        reported = [pair for r in reports for pair in r["leases"]]
        leases = {str(lease.id): lease for lease in storage.list_leases()}
        peaks = peak_per_proxy(leases.values())
        granted = {kind: sum(r["granted"] for r in reports if r["kind"] == kind) for kind in kinds}
        summary = (
            f"max_concurrency={max_concurrency} granted={granted} "
            f"none={sum(r['none'] for r in reports)} errors={dict(errors)} peaks={peaks}"
        )
        print("\n" + summary)
        assert not errors, (summary, [r["messages"] for r in reports])
        assert all(n > 50 for n in granted.values()), summary
        assert sorted(lid for lid, _ in reported) == sorted(leases), "reported != stored"
        assert all(str(leases[lid].proxy_id) == pid for lid, pid in reported)
        assert all(
            lease.status is LeaseStatus.RELEASED and lease.released_at is not None
            for lease in leases.values()
        ), summary
        assert all(peak <= max_concurrency for peak in peaks.values()), summary
        assert max(peaks.values()) == max_concurrency, f"contention never reached: {summary}"
        used = Counter(s for r in reports for s in r["selectors"])
        assert set(used) == {s.value for s in SELECTORS}
        stats = storage.get_pool_stats(pool_name)
        assert stats is not None
        assert (stats.total_leases, stats.leased_proxies, stats.available_proxies) == (
            0,
            0,
            PROXIES,
        )
        assert [p.current_leases for p in storage.list_proxies(str(pool.id))] == [0] * PROXIES
        report = storage.audit()
        assert report.drift == () and report.active_leases == 0, report
    finally:
        storage.client.close()
