"""``pharox-redis leases POOL`` (who holds what, for how long) and ``pharox-redis release``."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any, Optional

from pharox import Lease, LeaseStatus

from ..storage import RedisStorage
from .errors import CliError, ExitCode
from .session import consumer_names, find_pool, open_storage, print_json
from .ui import Table, show


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``leases`` and ``release`` to the subcommands."""
    leases = commands.add_parser(
        "leases",
        parents=[common],
        help="list a pool's active leases, oldest first (--all: released ones too)",
        description="List a pool's leases, oldest first: active ones, or with --all also "
        "those released within the retention (lease_retention_seconds, 300 s by default).",
    )
    leases.add_argument("pool", help="the pool's name")
    leases.add_argument("--consumer", help="only this consumer's (by name)")
    leases.add_argument("--all", action="store_true", help="released leases too")
    leases.set_defaults(run=list_leases)
    release = commands.add_parser(
        "release",
        parents=[common],
        help="release a lease by id (a stuck one: its holder died or hangs)",
        description="Release a lease now instead of at its deadline; idempotent.",
    )
    release.add_argument("lease_id", help="the lease's id (from pharox-redis leases)")
    release.set_defaults(run=release_lease)


def describe(lease: Lease, names: dict[str, str], now: datetime) -> dict[str, Any]:
    """Return what is shown of a lease."""
    remaining = (lease.expires_at - now).total_seconds()
    return {
        "id": str(lease.id),
        "consumer": names.get(str(lease.consumer_id), str(lease.consumer_id)),
        "proxy_id": str(lease.proxy_id),
        "status": LeaseStatus(lease.status).value,
        "acquired_at": lease.acquired_at.isoformat(),
        "held_seconds": round((now - lease.acquired_at).total_seconds(), 1),
        "expires_in_seconds": round(remaining, 1) if lease.status == LeaseStatus.ACTIVE else None,
        "released_at": lease.released_at.isoformat() if lease.released_at else None,
    }


def list_leases(args: argparse.Namespace) -> int:
    """Print a pool's leases (active by default)."""
    with open_storage(args) as storage:
        pool = find_pool(storage, args.pool)
        names = consumer_names(storage)
        if args.consumer is not None and args.consumer not in names.values():
            raise CliError(ExitCode.NOT_FOUND, f"no consumer named {args.consumer!r}")
        found = storage.list_leases(args.consumer, pool_name=pool.name, active_only=not args.all)
        addresses = proxy_addresses(storage, str(pool.id))
    now = datetime.now(timezone.utc)
    rows = [describe(lease, names, now) for lease in found]
    for row in rows:
        row["proxy"] = addresses.get(row["proxy_id"], row["proxy_id"])
    if args.json:
        print_json(rows)
        return ExitCode.OK
    kind = "lease(s)" if args.all else "active lease(s)"
    table = Table(
        f"{len(rows)} {kind} in pool {pool.name}",
        ("lease", "consumer", "proxy", "held s", "expires in s", "status"),
        [
            (
                r["id"],
                r["consumer"],
                r["proxy"],
                r["held_seconds"],
                r["expires_in_seconds"],
                r["status"],
            )
            for r in rows
        ],
    )
    show([table])
    return ExitCode.OK


def proxy_addresses(storage: RedisStorage, pool_id: str) -> dict[str, str]:
    """Return ``host:port`` by proxy id for a pool."""
    return {str(p.id): f"{p.host}:{p.port}" for p in storage.list_proxies(pool_id)}


def release_lease(args: argparse.Namespace) -> int:
    """Release one lease; exit ``NOT_FOUND`` when no lease has that id."""
    with open_storage(args) as storage:
        lease = storage.get_lease(args.lease_id)
        if lease is None:
            raise CliError(
                ExitCode.NOT_FOUND,
                f"no lease {args.lease_id!r} (unknown, or released longer ago than the retention)",
            )
        was_active = lease.status == LeaseStatus.ACTIVE
        if was_active:
            storage.release_lease(lease)
        names = consumer_names(storage)
        proxy = storage.get_proxy_by_id(lease.proxy_id)
    address: Optional[str] = f"{proxy.host}:{proxy.port}" if proxy is not None else None
    result = {
        "lease": str(lease.id),
        "pool": lease.pool_name,
        "consumer": names.get(str(lease.consumer_id), str(lease.consumer_id)),
        "proxy": address or str(lease.proxy_id),
        "released": was_active,
    }
    if args.json:
        print_json(result)
    elif was_active:
        print(
            f"released lease {lease.id} (pool {lease.pool_name!r}, proxy {result['proxy']}, "
            f"consumer {result['consumer']!r})"
        )
    else:
        print(f"lease {lease.id} was already released (at {lease.released_at})")
    return ExitCode.OK
