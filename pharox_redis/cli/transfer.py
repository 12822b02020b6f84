"""``pharox-redis import POOL FILE`` and ``pharox-redis export POOL``.

Import reads the whole file first (see :mod:`pharox_redis.cli.proxy_files` for the formats)
and writes nothing, not even a new pool, when any line is bad: every bad line is reported
with its number and the command exits with ``BAD_INPUT``. Then it creates the pool if it is
missing and saves the proxies in chunks (a progress bar in a terminal for 1,000 or more).
The storage saves proxies by address (``save_proxies``): a proxy with the scheme, host, port
and user of one already in the pool updates it, so importing a file twice changes nothing.
``--replace`` then removes the pool's proxies the file does not list. A connection lost in
the middle leaves the chunks already saved; running the import again completes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from pharox import Proxy, ProxyPool, ProxyStatus

from .errors import CliError, ExitCode
from .proxy_files import FORMATS, Defaults, detect, parse, render
from .session import find_pool, open_storage, print_json
from .ui import Progress

CHUNK = 1000  # proxies per add_proxies_bulk call (its scripts take 500 each)
SHOWN_ERRORS = 20


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``import`` and ``export`` to the subcommands."""
    load = commands.add_parser(
        "import",
        parents=[common],
        help="load a proxy list (lines, CSV or JSON) into a pool",
        description="Load proxies into a pool, creating it if missing. Lines are "
        "[scheme://][user:password@]host:port; CSV has a header (url or host,port and "
        "protocol, username, password, status, max_concurrency, country, ...); JSON is a "
        "list of such strings or objects. Nothing is written when any line is bad.",
    )
    load.add_argument("pool", help="the pool's name (created if missing)")
    load.add_argument("file", help="the file, or - for stdin")
    load.add_argument("--format", choices=FORMATS, help="default: from the name or content")
    load.add_argument(
        "--replace", action="store_true", help="also remove the pool's proxies not in the file"
    )
    load.add_argument(
        "--status",
        choices=[s.value for s in ProxyStatus],
        default=ProxyStatus.ACTIVE.value,
        help="status of proxies whose line gives none (default active)",
    )
    load.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="max_concurrency of proxies whose line gives none (default unlimited)",
    )
    load.set_defaults(run=run_import)
    dump = commands.add_parser(
        "export",
        parents=[common],
        help="write a pool's proxies as a file import reads back",
        description="Write a pool's proxies in the formats import reads: lines carry the "
        "address and credentials, CSV and JSON every field.",
    )
    dump.add_argument("pool", help="the pool's name")
    dump.add_argument("--format", choices=FORMATS, help="default lines (json with --json)")
    dump.add_argument("--output", "-o", default="-", help="the file to write (default stdout)")
    dump.set_defaults(run=run_export)


def read_text(name: str) -> str:
    """Return a file's text (``-``: stdin).

    Raises
    ------
    CliError
        ``BAD_INPUT`` when it cannot be read or is not UTF-8 text.

    """
    try:
        if name == "-":
            return sys.stdin.read()
        return Path(name).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(ExitCode.BAD_INPUT, f"cannot read {name}: {reason}") from None


def run_import(args: argparse.Namespace) -> int:
    """Import a file into a pool (see the module docstring)."""
    if not args.pool.strip():
        raise CliError(ExitCode.USAGE, "the pool's name is empty")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise CliError(ExitCode.USAGE, "--max-concurrency must be at least 1")
    text = read_text(args.file)
    fmt = args.format or detect(args.file, text)
    label = "stdin" if args.file == "-" else args.file
    defaults = Defaults(ProxyStatus(args.status), args.max_concurrency)
    with open_storage(args) as storage:
        try:
            pool, created = find_pool(storage, args.pool), False
        except CliError as exc:
            if exc.code != ExitCode.NOT_FOUND:
                raise
            pool, created = ProxyPool(name=args.pool), True  # created once the file is good
        parsed = parse(text, fmt, pool.id, defaults)
        if parsed.errors:
            raise bad_file(label, fmt, parsed.errors)
        for duplicate in parsed.duplicates:
            print(f"warning: {label}: {duplicate}: skipped", file=sys.stderr)
        proxies = [proxy for _, proxy in parsed.proxies]
        if created:
            pool = storage.ensure_pool(args.pool)  # the same pool if another import made it
            for proxy in proxies:
                proxy.pool_id = pool.id
        before = {p.id for p in storage.list_proxies(str(pool.id))} if args.replace else set()
        kept: set[UUID] = set()
        updated = 0
        with Progress(f"importing into {pool.name}", len(proxies)) as progress:
            for start in range(0, len(proxies), CHUNK):
                chunk = proxies[start : start + CHUNK]
                saved = storage.save_proxies(chunk)  # by address: a known proxy is updated
                kept.update(saved.ids)
                updated += len(chunk) - saved.created_count
                progress.advance(len(chunk))
        removed = 0
        for stale in sorted(before - kept):  # --replace: what the file does not list
            storage.delete_proxy(str(stale))
            removed += 1
    result = {
        "pool": pool.name,
        "id": str(pool.id),
        "created": created,
        "format": fmt,
        "imported": len(proxies),
        "new": len(proxies) - updated,
        "updated": updated,
        "removed": removed,
        "duplicates_skipped": len(parsed.duplicates),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"imported {len(proxies)} prox{'y' if len(proxies) == 1 else 'ies'} into pool "
            f"{pool.name!r}{' (created)' if created else ''}: {result['new']} new, "
            f"{updated} updated, {removed} removed"
        )
    return ExitCode.OK


def bad_file(label: str, fmt: str, errors: list[str]) -> CliError:
    """Return the error for a file with bad lines: one line each (the first 20), then a total."""
    if len(errors) == 1:
        return CliError(ExitCode.BAD_INPUT, f"{label}: {errors[0]}; nothing was imported")
    details = [f"error: {label}: {e}" for e in errors[:SHOWN_ERRORS]]
    if len(errors) > SHOWN_ERRORS:
        details.append(f"error: ... and {len(errors) - SHOWN_ERRORS} more")
    bad = len(errors)
    return CliError(
        ExitCode.BAD_INPUT,
        f"{label}: {bad} bad line{'s' if bad > 1 else ''} ({fmt}); nothing was imported",
        details,
    )


def run_export(args: argparse.Namespace) -> int:
    """Write a pool's proxies to stdout or ``--output``."""
    fmt = args.format or ("json" if args.json else "lines")
    with open_storage(args) as storage:
        pool = find_pool(storage, args.pool)
        proxies: list[Proxy] = sorted(
            storage.list_proxies(str(pool.id)), key=lambda p: (str(p.host), p.port)
        )
    text = render(proxies, fmt)
    if args.output == "-":
        sys.stdout.write(text)
        return ExitCode.OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(ExitCode.BAD_INPUT, f"cannot write {args.output}: {exc.strerror}") from None
    print(f"exported {len(proxies)} proxies of pool {pool.name!r} to {args.output} ({fmt})")
    return ExitCode.OK
