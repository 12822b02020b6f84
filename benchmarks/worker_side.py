"""What one worker process of sections 2-3 and 9 does: the timed windows ("phases").

A worker is a ``spawn`` process started once per process count (``benchmarks.workers``); it
runs every phase in order, each on a barrier with the other workers, and puts one report
per phase on a queue. The kinds of window:

* ``ping`` and ``evalsha``: the floor, Python round trips to the same Redis on the same
  client setup (``RedisStorage.from_url``), PING and EVALSHA of ``return 1``;
* ``stock`` and ``fast``: acquire+release cycles with pharox's stock ``ProxyManager`` and
  with ``RedisProxyManager``;
* ``rotate``: ``RedisProxyManager.rotate(leased)``, which releases the held lease and
  acquires the next proxy in one round trip;
* ``batch``: ``acquire_many(pool_name, 10)`` then ``release_many(leases)``.

A report counts ``ops`` (calls of the step) and ``units``: round trips for the floor,
cycles for ``stock`` and ``fast``, leases for ``rotate`` and ``batch``. Rates and CPU are
per unit. It also carries the process CPU time (``time.process_time``) of the window.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from pharox import ProxyManager, SelectorStrategy

from pharox_redis import LeasedProxy, RedisProxyManager, RedisStorage

FLOOR_KINDS = ("evalsha", "ping")
CYCLE_KINDS = ("fast", "stock")
LEASE_KINDS = ("rotate", "batch")  # units are leases, not cycles
MANAGER_KINDS = (*CYCLE_KINDS, *LEASE_KINDS)
KIND_NAMES = {
    "ping": "PING",
    "evalsha": "EVALSHA return 1",
    "stock": "ProxyManager (stock)",
    "fast": "RedisProxyManager",
    "rotate": "RedisProxyManager.rotate",
    "batch": "RedisProxyManager.acquire_many(10)",
}
BATCH_SIZE = 10
NOOP_SCRIPT = "return 1"
SELECTOR = SelectorStrategy.ROUND_ROBIN  # pharox's benchmark default
RETENTION_SECONDS = 3600.0  # no lease record may be purged before the audit
START_TIMEOUT = 120.0
POOL_NAME = "bench-workers"

Step = Callable[[], int]  # one call; returns the units it produced (0: a miss)


def kind_available(kind: str) -> Optional[str]:
    """Return None when this build can run ``kind``, else why it cannot."""
    needs = {"rotate": ("rotate",), "batch": ("acquire_many", "release_many")}.get(kind, ())
    missing = [name for name in needs if not hasattr(RedisProxyManager, name)]
    if missing:
        names = " and ".join(f"RedisProxyManager.{name}" for name in missing)
        return f"{names}: not available in this build"
    return None


@dataclass(frozen=True)
class Phase:
    """One timed window of one kind in one round."""

    kind: str
    round: int
    prefix: str = ""  # manager phases: the pool's key prefix


def _lease_cycle(manager: Union[ProxyManager, RedisProxyManager], consumer: str) -> int:
    """One acquire and release; 1 when a lease was granted."""
    lease = manager.acquire_proxy(POOL_NAME, consumer, selector=SELECTOR)
    if lease is None:
        return 0
    manager.release_proxy(lease)
    return 1


class Rotation:
    """Hold one lease and rotate it: each step releases it and leases the next proxy."""

    def __init__(self, manager: RedisProxyManager, consumer: str) -> None:
        self.manager = manager
        self.consumer = consumer
        self.held: Optional[LeasedProxy] = None

    def step(self) -> int:
        """Rotate the held lease (acquire one first when none is held); 1 per new lease."""
        held, self.held = self.held, None  # after an exception, start afresh
        if held is None:
            self.held = self.manager.acquire(POOL_NAME, self.consumer, selector=SELECTOR)
        else:
            self.held = self.manager.rotate(held)
        return 0 if self.held is None else 1

    def close(self) -> None:
        """Release the lease still held (after the window: not timed)."""
        if self.held is not None:
            self.manager.release_proxy(self.held)
            self.held = None


def _batch(manager: RedisProxyManager) -> int:
    """Lease up to ``BATCH_SIZE`` proxies in one call and release them in one call."""
    leases = manager.acquire_many(POOL_NAME, BATCH_SIZE)
    if leases:
        manager.release_many(leases)
    return len(leases)


def make_step(kind: str, storage: RedisStorage, consumer: str) -> tuple[Step, Callable[[], None]]:
    """Return the step of ``kind`` and what to do after the window."""
    client = storage.client
    if kind == "ping":
        return (lambda: int(bool(client.ping()))), lambda: None
    if kind == "evalsha":
        sha = client.script_load(NOOP_SCRIPT)
        return (lambda: int(client.evalsha(sha, 0) == 1)), lambda: None
    if kind == "stock":
        stock = ProxyManager(storage)
        return (lambda: _lease_cycle(stock, consumer)), lambda: None
    manager = RedisProxyManager(storage)
    if kind == "fast":
        return (lambda: _lease_cycle(manager, consumer)), lambda: None
    if kind == "rotate":
        rotation = Rotation(manager, consumer)
        return rotation.step, rotation.close
    if kind == "batch":
        return (lambda: _batch(manager)), lambda: None
    raise ValueError(f"unknown kind {kind!r}")


def run_phase(phase: Phase, index: int, url: str, seconds: float, barrier: Any) -> dict[str, Any]:
    """Set up, wait for everyone, run one timed window; return its counts."""
    out: dict[str, Any] = {
        "kind": phase.kind,
        "round": phase.round,
        "worker": index,
        "ops": 0,
        "units": 0,
        "misses": 0,
        "errors": Counter(),
        "messages": {},
        "latencies": [],
        "elapsed": 0.0,
        "cpu": 0.0,
    }
    storage = RedisStorage.from_url(
        url, prefix=phase.prefix or "bench-floor", lease_retention_seconds=RETENTION_SECONDS
    )
    try:
        step, finish = make_step(phase.kind, storage, f"worker-{index}")
        out["warm_units"] = step()  # warm up: connection, scripts, pool and consumer ids
        barrier.wait(timeout=START_TIMEOUT)
        latencies: list[float] = out["latencies"]
        clock = time.perf_counter
        cpu_began = time.process_time()
        began = clock()
        deadline = began + seconds
        while True:
            start = clock()
            if start >= deadline:
                break
            try:
                units = step()
            except Exception as exc:  # counted by type, never fatal
                name = type(exc).__name__
                out["errors"][name] += 1
                out["messages"].setdefault(name, repr(exc)[:300])
                continue
            latencies.append(clock() - start)
            out["ops"] += 1
            out["units"] += units
            out["misses"] += units == 0
        out["elapsed"] = clock() - began
        out["cpu"] = time.process_time() - cpu_began
        finish()
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
