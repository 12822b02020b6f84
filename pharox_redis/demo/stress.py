"""Threads leasing from the demo pool: pharox's stock ``ProxyManager`` vs ``RedisProxyManager``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pharox import ProxyManager, ProxyUnavailableError, SelectorStrategy

from ..manager import RedisProxyManager
from ..storage import RedisStorage
from .pool import POOL_NAME

THREADS = 4
CYCLES_PER_THREAD = 200


def stress(
    storage: RedisStorage, threads: int, cycles: int, stock: bool
) -> tuple[int, int, int, float]:
    """Run acquire/release cycles from several threads, each with its own manager.

    pharox's stock ``ProxyManager`` finds a proxy, then leases it, in two calls: two threads
    can find the same last free slot, and the loser gets ``ProxyUnavailableError`` (the lease
    itself is atomic, so nothing is over-leased). Such a lost race is counted and retried.
    ``RedisProxyManager`` finds and leases in one script, so it has no such race.

    Parameters
    ----------
    storage:
        The storage all threads share.
    threads:
        Number of threads.
    cycles:
        Acquire/release cycles per thread.
    stock:
        Use pharox's ``ProxyManager`` instead of ``RedisProxyManager``.

    Returns
    -------
    tuple[int, int, int, float]
        Cycles that got a lease, cycles that found nothing, lost races, and elapsed seconds.

    """
    leased = [0] * threads
    missed = [0] * threads
    races = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    selectors = list(SelectorStrategy)

    def worker(n: int) -> None:
        manager = ProxyManager(storage) if stock else RedisProxyManager(storage)
        manager.acquire_proxy("warm-up: resolve names", f"worker-{n}")
        start.wait()
        try:
            for i in range(cycles):
                selector = selectors[(n + i) % len(selectors)]
                while True:
                    try:
                        lease = manager.acquire_proxy(POOL_NAME, f"worker-{n}", selector=selector)
                        break
                    except ProxyUnavailableError:
                        races[n] += 1
                if lease is None:
                    missed[n] += 1
                    continue
                manager.release_proxy(lease)
                leased[n] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,), name=f"demo-{n}") for n in range(threads)]
    for thread in workers:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return sum(leased), sum(missed), sum(races), elapsed


def compare_managers(storage: RedisStorage, say: Callable[[str], None]) -> None:
    """Stress the demo pool with each manager in turn and print one line per manager.

    Parameters
    ----------
    storage:
        A storage holding the demo pool, with no lease held.
    say:
        Where output lines go.

    """
    say(f"stress: {THREADS} threads x {CYCLES_PER_THREAD} acquire/release cycles, all selectors:")
    for name, stock in (("pharox ProxyManager", True), ("RedisProxyManager", False)):
        ok, missed, races, elapsed = stress(storage, THREADS, CYCLES_PER_THREAD, stock)
        say(
            f"  {name:<19} {(ok + missed) / elapsed:>7,.0f} cycles/s; {ok} leased, "
            f"{missed} found nothing, {races} lost races (ProxyUnavailableError)"
        )
