"""``pharox-redis pools`` (every pool with its counters) and ``pharox-redis delete-pool``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pharox import PoolStatsSnapshot

from ..storage import RedisStorage
from .errors import CliError, ExitCode
from .session import find_pool, open_storage, print_json
from .ui import Table, show

COUNTERS = ("total_proxies", "active_proxies", "available_proxies", "leased_proxies")


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``pools`` and ``delete-pool`` to the subcommands."""
    pools = commands.add_parser(
        "pools", parents=[common], help="list the pools with their counters"
    )
    pools.set_defaults(run=list_pools)
    delete = commands.add_parser(
        "delete-pool",
        parents=[common],
        help="delete a pool with its proxies, leases and history",
        description="Delete a pool with its proxies, leases and health history. Asks first "
        "in a terminal; elsewhere --yes is required.",
    )
    delete.add_argument("pool", help="the pool's name")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask")
    delete.set_defaults(run=delete_pool)


def counters(stats: PoolStatsSnapshot | None) -> dict[str, int]:
    """Return a snapshot's counters by name (zeros for a pool read as it was deleted)."""
    out = {name: int(getattr(stats, name, 0) or 0) for name in COUNTERS}
    out["active_leases"] = int(stats.total_leases) if stats is not None else 0
    return out


def list_pools(args: argparse.Namespace) -> int:
    """Print every pool with its counters (``list_pool_stats``: two round trips in all)."""
    with open_storage(args) as storage:
        ids = {pool.name: str(pool.id) for pool in storage.list_pools()}
        rows = [
            {"name": stats.pool_name, "id": ids.get(stats.pool_name), **counters(stats)}
            for stats in storage.list_pool_stats()
        ]
    if args.json:
        print_json(rows)
        return ExitCode.OK
    table = Table(
        f"{len(rows)} pool(s)",
        ("pool", "proxies", "active", "available", "leased", "leases", "id"),
        [
            (
                r["name"],
                r["total_proxies"],
                r["active_proxies"],
                r["available_proxies"],
                r["leased_proxies"],
                r["active_leases"],
                r["id"],
            )
            for r in rows
        ],
    )
    show([table])
    return ExitCode.OK


def delete_pool(args: argparse.Namespace) -> int:
    """Delete a pool after asking (or with ``--yes``)."""
    with open_storage(args) as storage:
        pool = find_pool(storage, args.pool)
        if not args.yes:
            confirm(storage, pool.name)
        storage.delete_pool(str(pool.id))
    if args.json:
        print_json({"deleted": pool.name, "id": str(pool.id)})
    else:
        print(f"deleted pool {pool.name!r} ({pool.id})")
    return ExitCode.OK


def confirm(storage: RedisStorage, name: str) -> None:
    """Ask before deleting in a terminal; refuse without ``--yes`` elsewhere."""
    if not sys.stdin.isatty():
        raise CliError(ExitCode.USAGE, f"not deleting pool {name!r} without --yes")
    found = counters(storage.get_pool_stats(name))
    question = (
        f"delete pool {name!r} with {found['total_proxies']} proxies and "
        f"{found['active_leases']} active lease(s)? [y/N] "
    )
    if input(question).strip().lower() not in ("y", "yes"):
        raise CliError(ExitCode.USAGE, "not deleted")
