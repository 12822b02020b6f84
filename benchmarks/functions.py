"""Redis time per acquire+release cycle: scripts called with FCALL against EVALSHA.

``python -m benchmarks.functions [--cycles N] [--rounds R] [--proxies P]`` starts a private
redis-server (``PHAROX_REDIS_SERVER=valkey-server`` for Valkey), seeds one pool, and runs
interleaved rounds of ``cycles`` RedisProxyManager acquire+release cycles through two
storages on that pool: one calling the function library (``FCALL``), one told
``functions=False`` (``EVALSHA``). Before each round ``CONFIG RESETSTAT``; after it, ``INFO
commandstats`` gives the microseconds Redis spent in the round's script calls (Lua and the
commands it ran; not SLOWLOG, which on Redis 7.0 also logs the commands inside a script and
inflates script time). Prints the median over the rounds, per cycle and per call, for each
selector.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import redis
from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus, SelectorStrategy

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.server import RedisServer

VERBS = {True: "fcall", False: "evalsha"}


def script_usec(admin: redis.Redis) -> tuple[int, int]:
    """Return (usec, calls) of FCALL plus EVALSHA since the last CONFIG RESETSTAT."""
    stats: dict[str, Any] = admin.info("commandstats")
    usec = calls = 0
    for verb in VERBS.values():
        entry = stats.get(f"cmdstat_{verb}", {})
        usec += int(entry.get("usec", 0))
        calls += int(entry.get("calls", 0))
    return usec, calls


def seed(storage: RedisStorage, proxies: int) -> str:
    pool = ProxyPool(name="functions-bench")
    storage.save_pool(pool)
    storage.add_proxies_bulk(
        [
            Proxy(
                host=f"10.1.{n // 250}.{n % 250 + 1}",
                port=8000 + n,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                max_concurrency=None,
                status=ProxyStatus.ACTIVE,
            )
            for n in range(proxies)
        ]
    )
    return pool.name


def measure(cycles: int, rounds: int, proxies: int) -> dict[tuple[str, bool], list[float]]:
    """Return µs of Redis time per cycle, per (selector, functions), one value per round."""
    out: dict[tuple[str, bool], list[float]] = {}
    with RedisServer() as server, redis.Redis.from_url(server.url) as admin:
        storages = {
            functions: RedisStorage.from_url(server.url, prefix="bench", functions=functions)
            for functions in (True, False)
        }
        pool = seed(storages[True], proxies)
        managers = {f: RedisProxyManager(s) for f, s in storages.items()}
        for manager in managers.values():  # warm: names cached, library and scripts loaded
            for _ in range(50):
                leased = manager.acquire(pool, "bench", 60)
                assert leased is not None
                manager.release_proxy(leased)
        for selector in SelectorStrategy:
            for _ in range(rounds):
                for functions, manager in managers.items():
                    admin.config_resetstat()
                    for _ in range(cycles):
                        leased = manager.acquire(pool, "bench", 60, selector=selector)
                        assert leased is not None
                        manager.release_proxy(leased)
                    usec, calls = script_usec(admin)
                    assert calls == 2 * cycles, (calls, cycles)
                    verb = admin.info("commandstats").get(f"cmdstat_{VERBS[functions]}")
                    assert verb is not None and int(verb["calls"]) == calls  # no fall back
                    out.setdefault((selector.value, functions), []).append(usec / cycles)
        for storage in storages.values():
            storage.client.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--proxies", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    results = measure(args.cycles, args.rounds, args.proxies)
    print(
        f"Redis time per acquire+release cycle (INFO commandstats, median of {args.rounds} "
        f"interleaved rounds of {args.cycles} cycles, {args.proxies} proxies)"
    )
    print(
        f"{'selector':<16}{'EVALSHA us':>12}{'FCALL us':>10}{'saved/cycle':>13}{'saved/call':>12}"
    )
    for selector in SelectorStrategy:
        old = statistics.median(results[(selector.value, False)])
        new = statistics.median(results[(selector.value, True)])
        row = f"{selector.value:<16}{old:>12.1f}{new:>10.1f}"
        print(f"{row}{old - new:>13.1f}{(old - new) / 2:>12.1f}")


if __name__ == "__main__":
    main()
