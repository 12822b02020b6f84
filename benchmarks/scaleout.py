"""Section 7: scale-out on Redis Cluster, 1 master against 3 on the same machine.

Many pools (each under its own hash tag, so spread over the masters) are leased by N
``spawn`` worker processes, each cycling acquire+release over every pool in turn, through
``RedisStorage.from_url("redis+cluster://...")``. For each master count and N, the
aggregate cycles/s of a timed window (median of the rounds) is compared; ``INFO
commandstats`` of the 1-master cluster gives the Redis time one cycle costs, which bounds
what one pool can serve: a pool lives on one master, and a master runs one script at a
time.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import redis
from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.server import LocalCluster

from .settings import Settings

POOLS = 24
PROXIES_PER_POOL = 4
START_TIMEOUT = 120.0


@dataclass
class ScaleOutResult:
    """Aggregate cycles/s by (masters, processes), and one master's Redis time per cycle."""

    rates: dict[tuple[int, int], float] = field(default_factory=dict)
    redis_us_per_cycle: Optional[float] = None
    pools: int = POOLS
    notes: list[str] = field(default_factory=list)


def _worker(url: str, prefix: str, seconds: float, rounds: int, barrier: Any, out: Any) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix)
    manager = RedisProxyManager(storage)
    names = [f"scale-{n}" for n in range(POOLS)]
    for name in names:  # resolve every name, load the scripts: nothing cold in the window
        manager.release_proxy(manager.acquire(name, duration_seconds=60))  # type: ignore[arg-type]
    counts = []
    for _ in range(rounds):
        barrier.wait(START_TIMEOUT)
        done, turn, end = 0, 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            leased = manager.acquire(names[turn % POOLS], duration_seconds=60)
            turn += 1
            if leased is not None:
                manager.release_proxy(leased)
                done += 1
        counts.append(done)
    out.put(counts)
    storage.client.close()


def _seed(url: str, prefix: str) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix)
    for n in range(POOLS):
        pool = ProxyPool(name=f"scale-{n}")
        storage.save_pool(pool)
        storage.add_proxies_bulk(
            [
                Proxy(
                    host=f"10.9.{n}.{i + 1}",
                    port=9000 + i,
                    protocol=ProxyProtocol.HTTP,
                    pool_id=pool.id,
                    status=ProxyStatus.ACTIVE,
                    max_concurrency=1,
                )
                for i in range(PROXIES_PER_POOL)
            ]
        )
    storage.client.close()


def _run(url: str, processes: int, seconds: float, rounds: int) -> float:
    """Return the median aggregate cycles/s of ``processes`` workers."""
    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}"
    _seed(url, prefix)
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(processes)
    out = spawn.Queue()
    workers = [
        spawn.Process(target=_worker, args=(url, prefix, seconds, rounds, barrier, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    counts = [out.get(timeout=START_TIMEOUT + rounds * seconds * 10) for _ in workers]
    for worker in workers:
        worker.join(30)
    per_round = [sum(c[r] for c in counts) / seconds for r in range(rounds)]
    return float(statistics.median(per_round))


def _evalsha_us(cluster: LocalCluster) -> tuple[float, int]:
    """Return script microseconds and calls summed over the masters (``INFO commandstats``).

    Scripts go out as FCALL where the server has Functions, else as EVALSHA: both count.
    """
    usec = calls = 0
    for server in cluster.servers:
        with redis.Redis(port=server.port) as client:
            stats = client.info("commandstats")
            for name in ("cmdstat_evalsha", "cmdstat_fcall"):
                usec += int(stats.get(name, {}).get("usec", 0))
                calls += int(stats.get(name, {}).get("calls", 0))
    return float(usec), calls


def run_scaleout(settings: Settings, say: Callable[[str], None]) -> ScaleOutResult:
    """Measure 1 master against 3, for every process count of the settings."""
    result = ScaleOutResult()
    for masters in (1, 3):
        with LocalCluster(masters=masters, replicas=0) as cluster:
            for processes in settings.processes:
                if masters == 1:
                    for server in cluster.servers:
                        with redis.Redis(port=server.port) as client:
                            client.config_resetstat()
                rate = _run(cluster.url, processes, settings.seconds, settings.rounds)
                result.rates[(masters, processes)] = rate
                if masters == 1 and result.redis_us_per_cycle is None:
                    usec, _ = _evalsha_us(cluster)
                    cycles = rate * settings.seconds * settings.rounds
                    result.redis_us_per_cycle = usec / cycles if cycles else None
                say(f"  {masters} master(s), {processes} process(es): {rate:,.0f} cycles/s")
    return result


def scaleout_lines(s: ScaleOutResult, settings: Settings) -> list[str]:
    """Return the report's lines for this section."""
    processes = sorted({n for _, n in s.rates})
    lines = [
        "## 7. Scale-out on Redis Cluster",
        "",
        f"{s.pools} pools ({PROXIES_PER_POOL} proxies each, max_concurrency=1) spread over "
        "the masters of a local cluster (no replicas), N `spawn` processes each cycling "
        "acquire+release over every pool through `redis+cluster://`; median aggregate "
        f"cycles/s of {settings.rounds} timed {settings.seconds:g} s window(s) "
        "(`benchmarks/scaleout.py`).",
        "",
        "| processes | 1 master: cycles/s | 3 masters: cycles/s | 3 / 1 |",
        "| --- | --- | --- | --- |",
    ]
    for n in processes:
        one, three = s.rates.get((1, n)), s.rates.get((3, n))
        ratio = f"{three / one:.2f}" if one and three else "-"
        lines.append(f"| {n} | {one or 0:,.0f} | {three or 0:,.0f} | {ratio} |")
    lines.append("")
    if s.redis_us_per_cycle:
        ceiling = 1e6 / s.redis_us_per_cycle
        lines.append(
            f"One acquire+release cycle costs {s.redis_us_per_cycle:,.0f} us of Redis time "
            "(`INFO commandstats`, FCALL or EVALSHA, 1 master). A pool lives on one master, "
            "and a master runs one script at a time, so one pool can serve at most about "
            f"{ceiling:,.0f} cycles/s, whatever the fleet: a fleet that needs more than that "
            "from one pool should split it into several pools, which the cluster spreads over "
            "its masters. On this 2-core machine the clients and the servers share the same "
            "cores, so more masters add little here; on separate hosts each master adds its "
            "own ceiling."
        )
        lines.append("")
    return lines
