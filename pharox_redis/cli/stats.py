"""``pharox-redis stats POOL [--watch]``: a pool's counters, consumers and proxies, live.

One read is the pool's counters (with the proxies in a cool-down, ``get_outcome_stats``), its
busiest proxies (from the lease counts, which only leased proxies have) and its lease records.
Leases per second come from two successive reads: the lease records that appeared in between
(records stay for ``lease_retention_seconds``, 300 s by default, longer than any refresh
interval), divided by the time between the reads. Each read costs work in proportion to the
pool's leased proxies and its lease records (the lease rate times the retention), not to the
pool's size.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from pharox import LeaseStatus, PoolStatsSnapshot, ProxyPool

from ..operations.proxies import busiest_proxies
from ..storage import RedisStorage
from .errors import CliError, ExitCode
from .pools import counters
from .session import consumer_names, find_pool, open_storage, print_json
from .ui import LiveView, Table, show


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``stats`` to the subcommands."""
    stats = commands.add_parser(
        "stats",
        parents=[common],
        help="a pool's counters, top consumers and busiest proxies (--watch: live)",
        description="Show a pool's counters, leases per second, top consumers and per-proxy "
        "usage; --watch refreshes the view in place until Ctrl-C (or --count reads).",
    )
    stats.add_argument("pool", help="the pool's name")
    stats.add_argument("--watch", "-w", action="store_true", help="refresh in place")
    stats.add_argument(
        "--interval", type=float, default=1.0, help="seconds between reads (default 1)"
    )
    stats.add_argument(
        "--count", type=int, default=None, help="with --watch: stop after this many reads"
    )
    stats.add_argument("--top", type=int, default=10, help="rows per table (default 10)")
    stats.set_defaults(run=run)


@dataclass
class Reading:
    """One read of a pool."""

    pool: ProxyPool
    counters: dict[str, int]
    consumers: Counter[str]
    proxies: list[dict[str, Any]]
    lease_ids: set[str]
    at: float
    leases_per_second: Optional[float] = None
    cooling: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the reading as JSON-ready values."""
        return {
            "pool": self.pool.name,
            "id": str(self.pool.id),
            **self.counters,
            **({"cooling_proxies": self.cooling} if self.cooling is not None else {}),
            "leases_per_second": self.leases_per_second,
            "top_consumers": [{"consumer": c, "leases": n} for c, n in self.consumers.items()],
            "proxies": self.proxies,
        }


def pool_counters(
    storage: RedisStorage, name: str
) -> tuple[Optional[PoolStatsSnapshot], Optional[int]]:
    """Return a pool's counters and its proxies in a cool-down (``Outcome.failed()``).

    Both come from ``get_outcome_stats``, read in one script call.
    """
    found = storage.get_outcome_stats(name)
    return (None, None) if found is None else (found.stats, found.cooling)


def read(storage: RedisStorage, pool: ProxyPool, previous: Optional[Reading], top: int) -> Reading:
    """Read a pool once; leases per second from the lease records new since ``previous``."""
    stats, cooling = pool_counters(storage, pool.name)
    if stats is None:
        raise CliError(ExitCode.NOT_FOUND, f"pool {pool.name!r} was deleted")
    at = time.monotonic()
    proxies = storage.executor.run(busiest_proxies(storage.context, pool.id, top))
    records = storage.list_leases(pool_name=pool.name)  # active and retained
    names = consumer_names(storage)
    active = [lease for lease in records if lease.status == LeaseStatus.ACTIVE]
    by_consumer = Counter(
        names.get(str(lease.consumer_id), str(lease.consumer_id)) for lease in active
    )
    rows = [
        {
            "proxy": f"{p.host}:{p.port}",
            "status": p.status.value,
            "leases": p.current_leases,
            "max_concurrency": p.max_concurrency,
        }
        for p in proxies
    ]
    ids = {str(lease.id) for lease in records}
    reading = Reading(
        pool,
        counters(stats),
        Counter(dict(by_consumer.most_common(top))),
        rows,
        ids,
        at,
        cooling=cooling,
    )
    if previous is not None and at > previous.at:
        reading.leases_per_second = len(ids - previous.lease_ids) / (at - previous.at)
    return reading


def view(reading: Reading, interval: Optional[float]) -> list[Table | str]:
    """Return what ``stats`` shows of a reading."""
    c = reading.counters
    rate = reading.leases_per_second
    pending = "- (needs two reads: --watch)" if interval is None else "..."
    head = [
        f"pool {reading.pool.name}  ({reading.pool.id})",
        f"proxies {c['total_proxies']}  active {c['active_proxies']}  "
        f"available {c['available_proxies']}  leased {c['leased_proxies']}  "
        + (f"in cool-down {reading.cooling}  " if reading.cooling is not None else "")
        + f"active leases {c['active_leases']}  "
        + ("leases/s " + (f"{rate:.1f}" if rate is not None else pending)),
    ]
    if interval is not None:
        head.append(f"every {interval:g} s; Ctrl-C to stop")
    consumers = Table(
        "top consumers", ("consumer", "active leases"), list(reading.consumers.items())
    )
    proxies = Table(
        "busiest proxies",
        ("proxy", "status", "leases", "max"),
        [(p["proxy"], p["status"], p["leases"], p["max_concurrency"]) for p in reading.proxies],
    )
    return [*head, consumers, proxies]


def run(args: argparse.Namespace) -> int:
    """Show a pool once, or live with ``--watch``."""
    if args.interval <= 0 or (args.count is not None and args.count < 1) or args.top < 1:
        raise CliError(ExitCode.USAGE, "--interval, --count and --top must be positive")
    with open_storage(args) as storage:
        pool = find_pool(storage, args.pool)
        if not args.watch:
            reading = read(storage, pool, None, args.top)
            if args.json:
                print_json(reading.as_json())
            else:
                show(view(reading, None))
            return ExitCode.OK
        watch(storage, pool, args)
    return ExitCode.OK


def watch(storage: RedisStorage, pool: ProxyPool, args: argparse.Namespace) -> None:
    """Read every ``--interval`` seconds and redraw in place until Ctrl-C or ``--count`` reads.

    With ``--json`` each reading is one JSON object on a line of its own.
    """
    previous: Optional[Reading] = None
    reads = 0
    with LiveView() as live:
        try:
            while args.count is None or reads < args.count:
                if previous is not None:
                    time.sleep(max(0.0, previous.at + args.interval - time.monotonic()))
                previous = read(storage, pool, previous, args.top)
                reads += 1
                if args.json:
                    print_json_line(previous.as_json())
                else:
                    live.update(view(previous, args.interval))
        except KeyboardInterrupt:  # the way to stop watching: not an error
            pass


def print_json_line(value: dict[str, Any]) -> None:
    """Print one JSON object on one line (a stream of readings)."""
    print(json.dumps(value, default=str), flush=True)
