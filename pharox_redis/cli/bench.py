"""``pharox-redis bench``: a quick side-by-side of acquire+release cycles per selector.

One process, one thread: ``RedisProxyManager`` on the server ``--url`` names, and pharox's
own ``ProxyManager`` on its ``InMemoryStorage`` (no network), on pools of the same size, for
each selector. The Redis side works under a prefix of its own and deletes everything it
wrote at the end; nothing else on the server is touched. It needs nothing beyond the
installed package: the full harness (``python -m benchmarks`` in a clone of the repository)
measures much more (processes, pool sizes, filters, Redis's own work per cycle).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from pharox import (
    InMemoryStorage,
    IStorage,
    Proxy,
    ProxyManager,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
    bootstrap_consumer,
)

from ..manager import RedisProxyManager
from ..storage import RedisStorage
from .errors import CliError, ExitCode
from .session import open_storage, print_json
from .ui import Table, show

POOL = "bench"
CONSUMER = "bench"


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``bench`` to the subcommands."""
    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="a quick side-by-side: RedisProxyManager on --url vs pharox's InMemoryStorage",
        description="Time acquire+release cycles per selector with RedisProxyManager on the "
        "server --url names (under a temporary prefix, removed afterwards) and with pharox's "
        "ProxyManager on InMemoryStorage, in one process.",
    )
    bench.add_argument("--cycles", type=int, default=1000, help="per selector (default 1000)")
    bench.add_argument("--proxies", type=int, default=32, help="pool size (default 32)")
    bench.add_argument(
        "--selector",
        action="append",
        choices=[s.value for s in SelectorStrategy],
        help="repeat to choose several (default: all four)",
    )
    bench.set_defaults(run=run)


def fill(storage: IStorage, size: int) -> None:
    """Create the bench pool with ``size`` ACTIVE proxies and the bench consumer."""
    pool = ProxyPool(name=POOL)
    storage.save_pool(pool)
    storage.add_proxies_bulk(
        [
            Proxy(
                host=f"10.0.{i // 250}.{i % 250 + 1}",
                port=8000 + i % 1000,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=ProxyStatus.ACTIVE,
            )
            for i in range(size)
        ]
    )
    bootstrap_consumer(storage, name=CONSUMER)


def cycles(manager: ProxyManager, selector: SelectorStrategy, count: int) -> dict[str, float]:
    """Run ``count`` acquire+release cycles; return cycles/s and the acquire p50 in us."""
    acquires: list[float] = []
    misses = 0
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        lease = manager.acquire_proxy(POOL, CONSUMER, 60, selector=selector)
        acquires.append(time.perf_counter() - began)
        if lease is None:
            misses += 1
        else:
            manager.release_proxy(lease)
    elapsed = time.perf_counter() - start
    return {
        "cycles_per_second": count / elapsed,
        "acquire_p50_us": statistics.median(acquires) * 1e6,
        "misses": misses,
    }


def run(args: argparse.Namespace) -> int:
    """Run the comparison and print a table (or JSON)."""
    if args.cycles < 1 or args.proxies < 1:
        raise CliError(ExitCode.USAGE, "--cycles and --proxies must be at least 1")
    selectors = [
        SelectorStrategy(s) for s in (args.selector or [s.value for s in SelectorStrategy])
    ]
    args.prefix = f"pharox-bench-{uuid.uuid4().hex[:12]}"
    rows = []
    with open_storage(args) as storage:
        try:
            fill(storage, args.proxies)
            memory = InMemoryStorage()
            fill(memory, args.proxies)
            managers: list[tuple[str, Callable[[], ProxyManager]]] = [
                ("redis", lambda: RedisProxyManager(storage)),
                ("in_memory", lambda: ProxyManager(memory)),
            ]
            for selector in selectors:
                row: dict[str, Any] = {"selector": selector.value}
                for name, make in managers:
                    manager = make()
                    cycles(manager, selector, min(50, args.cycles))  # warm up
                    row[name] = cycles(manager, selector, args.cycles)
                row["ratio"] = (
                    row["redis"]["cycles_per_second"] / row["in_memory"]["cycles_per_second"]
                )
                rows.append(row)
        finally:
            remove_prefix(storage)
    if args.json:
        print_json({"cycles": args.cycles, "proxies": args.proxies, "results": rows})
        return ExitCode.OK
    table = Table(
        f"{args.cycles} acquire+release cycles per selector, {args.proxies} proxies, one process",
        ("selector", "redis cycles/s", "in-memory cycles/s", "redis / in-memory", "redis p50 us"),
        [
            (
                r["selector"],
                round(r["redis"]["cycles_per_second"]),
                round(r["in_memory"]["cycles_per_second"]),
                round(r["ratio"], 2),
                round(r["redis"]["acquire_p50_us"]),
            )
            for r in rows
        ],
    )
    show(
        [
            table,
            "RedisProxyManager: one round trip per acquire and per release; "
            "InMemoryStorage: no network, one process only.",
        ]
    )
    return ExitCode.OK


def remove_prefix(storage: RedisStorage) -> None:
    """Delete the bench's pools and its prefix's registries (the prefix is its own)."""
    for pool in storage.list_pools():
        storage.delete_pool(str(pool.id))
    storage.client.delete(*storage.context.keys.globals)
