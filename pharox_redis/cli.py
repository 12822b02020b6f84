"""The ``pharox-redis`` command line (also ``python -m pharox_redis``).

``pharox-redis`` alone, or followed by demo options, runs the demo
(:mod:`pharox_redis.demo`); ``pharox-redis verify`` audits the pools of a server
(:mod:`pharox_redis.audit`). Later commands (import, stats, bench) join ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict

import redis

from .connect import redact
from .demo import main as demo_main
from .errors import RedisStorageError
from .operations.audit import AuditReport
from .storage import RedisStorage

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def verify(argv: list[str]) -> int:
    """Audit pools and report drift; ``--repair`` fixes it.

    Parameters
    ----------
    argv:
        The arguments after ``verify``.

    Returns
    -------
    int
        0 when the pools are consistent (or were repaired and an audit after the repair is
        clean), 1 when drift remains, 2 when the server cannot be reached.

    """
    parser = argparse.ArgumentParser(
        prog="pharox-redis verify",
        description="Recompute every lease count, availability set, counter and deadline "
        "index from the lease records and report each drift.",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Redis URL (default {DEFAULT_URL})")
    parser.add_argument("--prefix", default="pharox", help="key prefix (default pharox)")
    parser.add_argument("--pool", help="audit this pool only (by name)")
    parser.add_argument("--repair", action="store_true", help="fix the drift, per pool atomically")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        storage = RedisStorage.from_url(args.url, prefix=args.prefix)
        with storage.client:
            report = storage.audit(args.pool, repair=args.repair)
            after = storage.audit(args.pool) if args.repair and report.drift else report
    except (RedisStorageError, redis.RedisError) as exc:
        print(f"error: {redact(args.url)}: {exc}")
        return 2
    if args.json:
        print(json.dumps({**asdict(report), "clean_after": after.clean}, indent=2))
    else:
        print(summary(report))
        for drift in report.drift:
            print(f"  {drift}")
        if report.repaired and report.drift:
            print("repaired: " + ("audit now clean" if after.clean else summary(after)))
    return 0 if after.clean else 1


def summary(report: AuditReport) -> str:
    """Return a one-line summary of a report."""
    return (
        f"{report.pools} pool(s), {report.proxies} prox(ies), {report.active_leases} active "
        f"lease(s): {len(report.drift)} drift"
    )


COMMANDS: dict[str, Callable[[list[str]], int]] = {"verify": verify, "demo": demo_main}


def main(argv: list[str]) -> int:
    """Run a command; without one (or with only options) run the demo."""
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print("usage: pharox-redis [demo] [demo options] | pharox-redis verify [--help]")
        return 0
    return demo_main(argv)
