"""The ``pharox-redis`` command line (also ``python -m pharox_redis``).

One parser: the options every command takes (``--url``, ``--prefix``, ``--timeout``,
``--json``; before or after the command's name), ``--version``, and one subcommand per
job. ``pharox-redis`` alone, or with only demo options, runs the demo
(:mod:`pharox_redis.demo`), as ``pharox-redis demo`` does. Every failure a user can cause
ends with one line on stderr and a documented exit code (:mod:`.errors`), never a traceback.

Modules
-------
errors
    The exit codes and ``CliError``.
session
    The URL (``--url``, ``REDIS_URL``, the default), the storage, pools by name, JSON.
ui
    Tables, the live view and the progress bar: rich in a terminal, plain text otherwise.
pools, stats, leases, transfer, verify, bench, metrics
    The subcommands: ``pools`` and ``delete-pool``; ``stats``; ``leases`` and ``release``;
    ``import`` and ``export`` (file formats in ``proxy_files``); ``verify``; ``bench``;
    ``metrics``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from .. import __version__
from ..demo import main as demo_main
from . import bench, leases, metrics, pools, stats, transfer, verify
from .errors import CliError, ExitCode, exit_code_of, one_line
from .session import DEFAULT_URL

GROUPS = (pools, stats, transfer, leases, verify, bench, metrics)
EXIT_CODES = "\n".join(
    f"  {code.value:>3}  {code.name.lower().replace('_', ' ')}" for code in ExitCode
)


def common_options(defaults: bool) -> argparse.ArgumentParser:
    """Return the options every command takes.

    ``defaults`` is False for the subcommands' copy: an option given before the command's
    name is then not overwritten by the subcommand's default.
    """
    parser = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(None),
        help=f"Redis URL (default: $REDIS_URL, else {DEFAULT_URL}); host:port means redis://",
    )
    parser.add_argument("--prefix", default=default("pharox"), help="key prefix (default pharox)")
    parser.add_argument(
        "--timeout", type=float, default=default(5.0), help="socket timeout in s (default 5)"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="JSON output")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Return the one parser of ``pharox-redis``."""
    parser = argparse.ArgumentParser(
        prog="pharox-redis",
        parents=[common_options(defaults=True)],
        description="Operate pharox proxy pools in Redis. Without a command: the demo.",
        epilog=f"exit codes:\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pharox-redis {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options(defaults=False)
    for group in GROUPS:
        group.add_parsers(commands, common)
    commands.add_parser(
        "demo",
        add_help=False,
        help="a short tour on a private redis-server (or --url); options: demo --help",
    )
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``pharox-redis`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in (None, "demo"):
        url = ["--url", args.url] if args.url is not None else []
        return demo_main(url + extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:
        code = exit_code_of(exc)
        if code is None:
            raise
        details = exc.details if isinstance(exc, CliError) else []
        for line in details:
            print(line, file=sys.stderr)
        message = exc.message if isinstance(exc, CliError) else one_line(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
