"""Where one process's acquire+release cycle spends its time (the T1/T2/T3/T6 analysis).

Four measurements on the same Redis, one after the other:

1. the wall time of a RedisProxyManager cycle (no profiler), and of a no-op EVALSHA;
2. Redis's own execution time of each script, from ``SLOWLOG`` with a zero threshold
   (only on a private server: it changes the server's configuration);
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

from .redis_target import RedisTarget
from .settings import Settings

BLOCKS = 5  # timed blocks; the median block is reported
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
    script_us: dict[str, float] = field(default_factory=dict)  # SLOWLOG median per script
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

        if target.private:
            names = {s.sha: name for name, s in storage.executor.scripts.items()}
            target.admin.config_set("slowlog-max-len", 4 * count + 100)
            target.admin.config_set("slowlog-log-slower-than", 0)
            target.admin.slowlog_reset()
            for _ in range(count):
                cycle()
            target.admin.config_set("slowlog-log-slower-than", 10_000)
            durations: dict[str, list[int]] = defaultdict(list)
            for entry in target.admin.slowlog_get(4 * count + 100):
                parts = entry["command"].split()
                if parts[0] == b"EVALSHA":
                    name = names.get(parts[1].decode(), "other")
                    durations[name].append(int(entry["duration"]))
            result.script_us = {k: float(statistics.median(v)) for k, v in durations.items()}
            say("  server: " + ", ".join(f"{k} {v:,.0f} us" for k, v in result.script_us.items()))
        else:
            result.note = "script times need SLOWLOG on a private server (not --redis-url)"

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
