"""A leasing fleet for failover tests: threads that lease while a master dies.

Every worker thread acquires (``max_concurrency=1`` proxies), holds briefly and releases, in
a loop, through its own storage, and keeps every lease it was granted. A lease is held, as
its worker knows, from ``acquired_at`` until the release was acknowledged (``released_at``),
or until its deadline when the release failed. Replayed on the server's clock, a proxy held
by two workers at once is an overlap: the new master lost a lease the old one had
acknowledged. The fleet also records when each acquire succeeded, so the longest gap in a
pool's leasing is how long the failover stopped it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pharox import Lease, ProxyPool

from pharox_redis import RedisProxyManager, RedisStorage

from .faults import peak_per_proxy

HOLD_SECONDS = 0.002
LEASE_SECONDS = 30.0


@dataclass
class FleetReport:
    """What the fleet saw."""

    leases: list[Lease] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    granted: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def overleased(self) -> dict[str, int]:
        """Return the proxies held by more than one worker at once, with their peak."""
        return {proxy: n for proxy, n in peak_per_proxy(self.leases).items() if n > 1}

    def gap(self, pool: str, after: float) -> float:
        """Return the longest time after ``after`` without a lease granted in ``pool``."""
        times = sorted(t for t in self.granted[pool] if t >= after)
        if not times:
            return float("inf")
        return max([times[0] - after] + [b - a for a, b in itertools.pairwise(times)])


class Fleet:
    """Worker threads leasing from ``pools`` until stopped, worker ``n`` from pool ``n``.

    Parameters
    ----------
    make_storage:
        Builds each worker's own storage (its own client).
    pools:
        The pools the workers lease from, in turn.
    workers:
        How many threads.

    """

    def __init__(
        self,
        make_storage: Callable[[], RedisStorage],
        pools: Sequence[ProxyPool],
        workers: int = 6,
    ) -> None:
        self.report = FleetReport()
        self._pools = list(pools)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(make_storage(), n), daemon=True)
            for n in range(workers)
        ]

    def start(self) -> Fleet:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> FleetReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a worker did not stop"
        return self.report

    def _work(self, storage: RedisStorage, n: int) -> None:
        manager = RedisProxyManager(storage, retries=2)
        pool = self._pools[n % len(self._pools)]  # one pool each: a stalled pool stalls alone
        while not self._stop.is_set():
            try:
                leased = manager.acquire(pool.name, f"w{n}", LEASE_SECONDS)
            except Exception as exc:  # counted: the test says which are allowed
                self._error(exc)
                time.sleep(0.01)
                continue
            if leased is None:
                continue
            with self._lock:
                self.report.leases.append(leased.lease)
                self.report.granted[pool.name].append(time.monotonic())
            time.sleep(HOLD_SECONDS)
            try:
                manager.release_proxy(leased)
            except Exception as exc:  # held until its deadline, as far as we know
                leased.lease.released_at = leased.lease.expires_at
                self._error(exc)
        storage.client.close()

    def _error(self, exc: BaseException) -> None:
        cause = exc.__cause__
        name = type(exc).__name__ + (f"<-{type(cause).__name__}" if cause else "")
        with self._lock:
            self.report.errors[name] += 1
