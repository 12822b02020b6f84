"""Redis's own work per cycle, read from ``INFO commandstats``: ``redis.call``s and time.

Redis counts every command a script runs in ``INFO commandstats`` as well as the script
call itself (``EVALSHA``, ``FCALL``), whose time includes the commands it ran. So over a
counted number of cycles, with nothing else running on the server:

* ``redis.call``s per cycle = the calls of every command that is not a script call nor a
  connection, transaction or admin command (``NOT_CALLS``), divided by the cycles;
* Redis time per cycle = the microseconds of the script calls, divided by the cycles.

SLOWLOG is not used: with a zero threshold Redis 7.0 also logs each command inside a
script, which inflates the script's time by about a fifth.

This module imports nothing else from ``benchmarks``: ``benchmarks.baseline`` runs
:func:`main` in a subprocess on an older commit's ``pharox_redis`` (``python -m
benchmarks.commandstats``), so it only uses API every version has.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import redis
from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus, SelectorStrategy

import pharox_redis
from pharox_redis import RedisProxyManager, RedisStorage

SCRIPT_COMMANDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})
NOT_CALLS = SCRIPT_COMMANDS | {
    "auth",
    "client",
    "command",
    "config",
    "debug",
    "discard",
    "exec",
    "function",
    "hello",
    "info",
    "latency",
    "memory",
    "multi",
    "ping",
    "reset",
    "script",
    "select",
    "slowlog",
    "unwatch",
    "wait",
    "watch",
}
MODES = ("cycle", "rotate", "batch")
POOL = "bench-cost"
CONSUMER = "bench-cost"
POOL_SIZE = 32
BATCH_SIZE = 10
WARM_UP = 50


@dataclass
class Work:
    """Redis's work over ``units`` counted cycles (or leases): sums, and per unit."""

    units: int = 0
    calls: int = 0  # redis.calls (non-script data commands)
    script_runs: int = 0  # EVALSHA/FCALL calls
    script_usec: int = 0  # their time, the commands they ran included
    by_command: dict[str, int] = field(default_factory=dict)  # calls of each data command

    @property
    def calls_per_unit(self) -> float:
        return self.calls / self.units if self.units else 0.0

    @property
    def us_per_unit(self) -> float:
        return self.script_usec / self.units if self.units else 0.0

    @property
    def round_trips_per_unit(self) -> float:
        return self.script_runs / self.units if self.units else 0.0

    def add(self, other: Work) -> Work:
        """Return the sum of two measurements."""
        merged = dict(self.by_command)
        for name, calls in other.by_command.items():
            merged[name] = merged.get(name, 0) + calls
        return Work(
            self.units + other.units,
            self.calls + other.calls,
            self.script_runs + other.script_runs,
            self.script_usec + other.script_usec,
            merged,
        )


Snapshot = dict[str, tuple[int, int]]  # command -> (calls, usec)


def snapshot(client: redis.Redis) -> Snapshot:
    """Return the server's commandstats, by lower-case command name (``script|load``)."""
    stats: dict[str, Any] = client.info("commandstats")
    out: Snapshot = {}
    for key, entry in stats.items():
        name = str(key).removeprefix("cmdstat_").lower()
        out[name] = (int(entry["calls"]), int(entry["usec"]))
    return out


def difference(before: Snapshot, after: Snapshot, units: int) -> Work:
    """Return the work done between two snapshots, over ``units`` cycles."""
    work = Work(units=units)
    for name, (calls, usec) in after.items():
        calls_before, usec_before = before.get(name, (0, 0))
        calls, usec = calls - calls_before, usec - usec_before
        if calls <= 0:
            continue
        base = name.split("|", 1)[0]
        if base in SCRIPT_COMMANDS:
            work.script_runs += calls
            work.script_usec += usec
        elif base not in NOT_CALLS:
            work.calls += calls
            work.by_command[name] = calls
    return work


def seed(storage: RedisStorage) -> None:
    """Save a pool of ``POOL_SIZE`` proxies, max_concurrency 1."""
    pool = ProxyPool(name=POOL)
    storage.save_pool(pool)
    storage.add_proxies_bulk(
        [
            Proxy(
                host=f"10.7.0.{n + 1}",
                port=8000 + n,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=ProxyStatus.ACTIVE,
                max_concurrency=1,
            )
            for n in range(POOL_SIZE)
        ]
    )


def operation(
    manager: RedisProxyManager, mode: str, selector: Optional[SelectorStrategy]
) -> tuple[Callable[[], int], Callable[[], None]]:
    """Return one step of ``mode`` (it returns its units) and what to do afterwards."""
    if mode == "cycle":

        def cycle() -> int:
            leased = manager.acquire(POOL, CONSUMER, selector=selector)
            if leased is None:
                return 0
            manager.release_proxy(leased)
            return 1

        return cycle, lambda: None
    if mode == "batch":

        def batch() -> int:
            leases = manager.acquire_many(POOL, BATCH_SIZE)
            if leases:
                manager.release_many(leases)
            return len(leases)

        return batch, lambda: None
    held: list[Any] = [manager.acquire(POOL, CONSUMER, selector=selector)]

    def rotate() -> int:
        held[0] = manager.rotate(held[0])
        if held[0] is None:
            held[0] = manager.acquire(POOL, CONSUMER, selector=selector)
            return 0
        return 1

    def done() -> None:
        if held[0] is not None:
            manager.release_proxy(held[0])

    return rotate, done


def measure(
    url: str, prefix: str, mode: str, cycles: int, selector: Optional[SelectorStrategy]
) -> Work:
    """Run ``cycles`` warm steps of ``mode`` in a fresh pool under ``prefix``; count Redis's work.

    The caller deletes the prefix's keys afterwards.
    """
    storage = RedisStorage.from_url(url, prefix=prefix)
    admin = redis.Redis.from_url(url)
    try:
        seed(storage)
        step, done = operation(RedisProxyManager(storage), mode, selector)
        for _ in range(WARM_UP):
            step()
        before = snapshot(admin)
        units = sum(step() for _ in range(cycles))
        after = snapshot(admin)
        done()
        return difference(before, after, units)
    finally:
        admin.close()
        storage.client.close()


def main(argv: list[str]) -> int:
    """``python -m benchmarks.commandstats URL PREFIX CYCLES SELECTOR,...``: cycles as JSON.

    Prints ``{"module": <pharox_redis's file>, "work": {selector: Work}}``; each selector runs
    in a pool of its own, under ``PREFIX-<selector>``.
    """
    url, prefix, cycles, selectors = argv
    work = {
        name: asdict(measure(url, f"{prefix}-{name}", "cycle", int(cycles), SelectorStrategy(name)))
        for name in selectors.split(",")
    }
    print(json.dumps({"module": pharox_redis.__file__, "work": work}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
