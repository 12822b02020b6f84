"""Where one process's acquire+release cycle spends its time (the T1/T2/T3/T6 analysis).

Four measurements on the same Redis, one after the other:

1. the wall time of a RedisProxyManager cycle (no profiler), and of a no-op EVALSHA;
2. Redis's own time per acquire and per release, from ``INFO commandstats`` (script calls,
   the commands they run included) around blocks of acquires and blocks of releases; not
   SLOWLOG, which with a zero threshold also logs the commands inside a script and
   inflates script time by about a fifth;
3. a cProfile of the same cycles, split by where the Python time goes.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import RedisProxyManager

from .commandstats import difference, snapshot
from .redis_target import RedisTarget
from .settings import Settings

BLOCKS = 5  # timed blocks; the median block is reported
HELD = 16  # leases acquired in a block before they are released in a block (pool of 32)
BUCKETS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("waiting for Redis (socket recv)", lambda f, fn: "recv_into" in fn),
    ("pharox_redis", lambda f, fn: "pharox_redis" in f),
    ("redis-py", lambda f, fn: "/redis/" in f),
    ("pydantic (pharox models)", lambda f, fn: "pydantic" in f or "/pharox/" in f),
)


@dataclass
class ProfileResult:
    cycle_us: float  # one acquire+release, wall, median block
    noop_us: float  # one EVALSHA of `return 1`, wall, median block
    script_us: dict[str, float] = field(default_factory=dict)  # Redis us per acquire, release
    profile_share: dict[str, float] = field(default_factory=dict)  # bucket -> share
    top: list[tuple[str, float]] = field(default_factory=list)  # function -> us per cycle
    note: Optional[str] = None

    @property
    def server_us(self) -> Optional[float]:
        """Redis's own time per cycle: the scripts one warm cycle runs."""
        if not self.script_us:
            return None
        return sum(self.script_us.get(name, 0.0) for name in ("acquire", "release"))


def _median_block(step: Callable[[], Any], count: int) -> float:
    times = []
    for _ in range(BLOCKS):
        started = time.perf_counter()
        for _ in range(count):
            step()
        times.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(times)


def redis_time(target: RedisTarget, manager: RedisProxyManager, count: int) -> dict[str, float]:
    """Return Redis's time per acquire and per release (us), from ``INFO commandstats``.

    Leases are taken ``HELD`` at a time and then released, with a snapshot between the
    blocks, so each block's script time belongs to one operation.
    """
    spent = {"acquire": [0, 0], "release": [0, 0]}  # usec, operations
    done = 0
    while done < count:
        before = snapshot(target.admin)
        leases = [manager.acquire_proxy("profile", "bench", 60) for _ in range(HELD)]
        middle = snapshot(target.admin)
        granted = [lease for lease in leases if lease is not None]
        for lease in granted:
            manager.release_proxy(lease)
        after = snapshot(target.admin)
        for name, (a, b), ops in (
            ("acquire", (before, middle), HELD),
            ("release", (middle, after), len(granted)),
        ):
            spent[name][0] += difference(a, b, ops).script_usec
            spent[name][1] += ops
        done += HELD
    return {name: usec / ops for name, (usec, ops) in spent.items() if ops}


def run_profile(
    settings: Settings, target: RedisTarget, say: Callable[[str], None]
) -> ProfileResult:
    count = max(50, settings.iterations // 2)
    with target.storage("profile") as storage:
        pool = ProxyPool(name="profile")
        storage.save_pool(pool)
        storage.add_proxies_bulk(
            [
                Proxy(
                    host=f"10.9.0.{n + 1}",
                    port=8000 + n,
                    protocol=ProxyProtocol.HTTP,
                    pool_id=pool.id,
                    status=ProxyStatus.ACTIVE,
                )
                for n in range(settings.pool_size)
            ]
        )
        manager = RedisProxyManager(storage)
        client = storage.client
        noop = client.script_load("return 1")

        def cycle() -> None:
            lease = manager.acquire_proxy("profile", "bench", 60)
            assert lease is not None
            manager.release_proxy(lease)

        for _ in range(50):
            cycle()  # warm: caches, scripts, the pool's cleanup entry
        cycle_us = _median_block(cycle, count)
        noop_us = _median_block(lambda: client.evalsha(noop, 0), count)
        result = ProfileResult(cycle_us, noop_us)
        say(f"  cycle {cycle_us:,.0f} us; no-op EVALSHA {noop_us:,.0f} us")

        result.script_us = redis_time(target, manager, count)
        say("  server: " + ", ".join(f"{k} {v:,.0f} us" for k, v in result.script_us.items()))
        if not target.private:
            result.note = "on --redis-url, other clients' commands count in the Redis time"

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            cycle()
        profiler.disable()
        stats = pstats.Stats(profiler)
        raw: Any = stats.stats  # type: ignore[attr-defined]
        total = sum(tt for (_, _, _), (_, _, tt, _, _) in raw.items())
        shares: dict[str, float] = defaultdict(float)
        top: list[tuple[str, float]] = []
        for (filename, line, fn), (_, _, tt, _, _) in raw.items():
            bucket = next((b for b, test in BUCKETS if test(filename, fn)), "other")
            shares[bucket] += tt / total
            short = filename.rsplit("site-packages/", 1)[-1].rsplit("/work/main/", 1)[-1]
            top.append((f"{short}:{line}({fn})", tt / count * 1e6))
        result.profile_share = dict(shares)
        result.top = sorted(top, key=lambda item: -item[1])[:10]
    return result
