"""Redis time per acquire+release cycle: scripts called with FCALL against EVALSHA.

``python -m benchmarks.functions [--cycles N] [--rounds R] [--proxies P]`` starts a private
redis-server (``PHAROX_REDIS_SERVER=valkey-server`` for Valkey), seeds one pool, and runs
interleaved rounds of ``cycles`` RedisProxyManager acquire+release cycles through two
storages on that pool: one calling the function library (``FCALL``), one told
``functions=False`` (``EVALSHA``). Before each round ``CONFIG RESETSTAT``; after it, ``INFO
commandstats`` gives the microseconds Redis spent in the round's script calls (Lua and the
commands it ran; not SLOWLOG, which on Redis 7.0 also logs the commands inside a script and
inflates script time). Prints the median over the rounds, per cycle and per call, for each
selector. Then the same from the server's CPU time (``INFO cpu``) over longer rounds.

Rounds are short (5 cycles by default) and many: commandstats adds up wall time inside each
command, so a round in which the server was preempted (on a busy machine, for whole
milliseconds) counts far more than the work done; the median of many short rounds is a round
that was not.
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


def cpu_seconds(admin: redis.Redis) -> float:
    """Return the CPU time the server has used (``INFO cpu``: user + system)."""
    cpu: dict[str, Any] = admin.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


Results = dict[tuple[str, str, bool], list[float]]  # (measure, selector, functions) -> rounds


def measure(cycles: int, rounds: int, proxies: int, cpu_cycles: int) -> Results:
    """Return µs per cycle, per (measure, selector, functions), one value per round.

    ``script``: INFO commandstats time of the script calls, short rounds. ``cpu``: the
    server's CPU time (all of it: parsing, networking, Lua), rounds of ``cpu_cycles``; CPU
    time does not grow while the server waits for a core, so a busy machine inflates it
    far less.
    """
    out: Results = {}
    with RedisServer() as server, redis.Redis.from_url(server.url) as admin:
        storages = {
            functions: RedisStorage.from_url(server.url, prefix="bench", functions=functions)
            for functions in (True, False)
        }
        pool = seed(storages[True], proxies)
        managers = {f: RedisProxyManager(s) for f, s in storages.items()}

        def cycle(manager: RedisProxyManager, selector: SelectorStrategy, n: int) -> None:
            for _ in range(n):
                leased = manager.acquire(pool, "bench", 60, selector=selector)
                assert leased is not None
                manager.release_proxy(leased)

        for manager in managers.values():  # warm: names cached, library and scripts loaded
            cycle(manager, SelectorStrategy.FIRST_AVAILABLE, 50)
        for selector in SelectorStrategy:
            for _ in range(rounds):
                for functions, manager in managers.items():
                    admin.config_resetstat()
                    cycle(manager, selector, cycles)
                    usec, calls = script_usec(admin)
                    assert calls == 2 * cycles, (calls, cycles)
                    verb = admin.info("commandstats").get(f"cmdstat_{VERBS[functions]}")
                    assert verb is not None and int(verb["calls"]) == calls  # no fall back
                    out.setdefault(("script", selector.value, functions), []).append(usec / cycles)
            for _ in range(max(3, rounds // 25)):
                for functions, manager in managers.items():
                    before = cpu_seconds(admin)
                    cycle(manager, selector, cpu_cycles)
                    used = (cpu_seconds(admin) - before) * 1e6 / cpu_cycles
                    out.setdefault(("cpu", selector.value, functions), []).append(used)
        for storage in storages.values():
            storage.client.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5, help="cycles per round")
    parser.add_argument("--rounds", type=int, default=200, help="rounds per selector and way")
    parser.add_argument("--cpu-cycles", type=int, default=300, help="cycles per CPU round")
    parser.add_argument("--proxies", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    results = measure(args.cycles, args.rounds, args.proxies, args.cpu_cycles)
    titles = {
        "script": f"script time (INFO commandstats usec of FCALL / EVALSHA; median of "
        f"{args.rounds} interleaved rounds of {args.cycles} cycles)",
        "cpu": f"server CPU time (INFO cpu, user + sys; median of {max(3, args.rounds // 25)} "
        f"interleaved rounds of {args.cpu_cycles} cycles)",
    }
    for what, title in titles.items():
        print(f"\nRedis {title}, per acquire+release cycle, {args.proxies} proxies")
        head = f"{'selector':<16}{'EVALSHA us':>12}{'FCALL us':>10}"
        print(f"{head}{'saved/cycle':>13}{'saved/call':>12}")
        for selector in SelectorStrategy:
            old = statistics.median(results[(what, selector.value, False)])
            new = statistics.median(results[(what, selector.value, True)])
            row = f"{selector.value:<16}{old:>12.1f}{new:>10.1f}"
            print(f"{row}{old - new:>13.1f}{(old - new) / 2:>12.1f}")


if __name__ == "__main__":
    main()
