"""``pharox-redis verify``: audit pools and report drift; ``--repair`` fixes it.

Exit codes: 0 when the pools are consistent (or were repaired and an audit after the repair
is clean), 1 (``DRIFT``) when drift remains, 4 for an unknown ``--pool``, 3 when the server
cannot be reached (see :mod:`pharox_redis.cli.errors`).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ..operations.audit import AuditReport
from .errors import ExitCode
from .session import find_pool, open_storage, print_json


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``verify`` to the subcommands."""
    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="audit the pools and report drift (exit 1 on drift)",
        description="Recompute every lease count, availability set, counter and deadline "
        "index from the lease records and report each drift.",
    )
    verify.add_argument("--pool", help="audit this pool only (by name)")
    verify.add_argument("--repair", action="store_true", help="fix the drift, per pool atomically")
    verify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Audit (and repair) the pools; see the module docstring for the exit codes."""
    with open_storage(args) as storage:
        if args.pool is not None:
            find_pool(storage, args.pool)
        report = storage.audit(args.pool, repair=args.repair)
        after = storage.audit(args.pool) if args.repair and report.drift else report
    if args.json:
        print_json({**asdict(report), "clean_after": after.clean})
    else:
        print(summary(report))
        for drift in report.drift:
            print(f"  {drift}")
        if report.repaired and report.drift:
            print("repaired: " + ("audit now clean" if after.clean else summary(after)))
    return ExitCode.OK if after.clean else ExitCode.DRIFT


def summary(report: AuditReport) -> str:
    """Return a one-line summary of a report."""
    return (
        f"{report.pools} pool(s), {report.proxies} prox(ies), {report.active_leases} active "
        f"lease(s): {len(report.drift)} drift"
    )
