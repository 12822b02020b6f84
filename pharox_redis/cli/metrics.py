"""``pharox-redis metrics --port N``: serve the pools' Prometheus metrics over HTTP.

It calls :func:`pharox_redis.metrics.serve_metrics` (the ``metrics`` extra, which brings
``prometheus_client``) and serves until Ctrl-C (or for ``--seconds``).
"""

from __future__ import annotations

import argparse
import importlib
import time
from typing import Any

from .errors import CliError, ExitCode
from .session import open_storage


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``metrics`` to the subcommands."""
    metrics = commands.add_parser(
        "metrics",
        parents=[common],
        help="serve the pools' metrics for Prometheus on --port",
        description="Serve per-pool gauges and counters in Prometheus's text format on "
        "http://ADDR:PORT/metrics until Ctrl-C. Needs the metrics extra: "
        "pip install 'pharox-redis[metrics]'.",
    )
    metrics.add_argument("--port", type=int, default=9464, help="HTTP port (default 9464)")
    metrics.add_argument("--addr", default="127.0.0.1", help="address (default 127.0.0.1)")
    metrics.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: never)"
    )
    metrics.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (or ``--seconds``)."""
    try:
        module = importlib.import_module("pharox_redis.metrics")
        serve = module.serve_metrics
    except (ImportError, AttributeError) as exc:
        raise CliError(
            ExitCode.USAGE,
            f"metrics need prometheus_client: pip install 'pharox-redis[metrics]' ({exc})",
        ) from None
    with open_storage(args) as storage:
        try:
            server = serve(args.port, storage, addr=args.addr)
        except OSError as exc:
            raise CliError(
                ExitCode.USAGE, f"cannot listen on {args.addr}:{args.port}: {exc.strerror}"
            ) from None
        print(
            f"serving metrics on http://{args.addr}:{args.port}/metrics (Ctrl-C to stop)",
            flush=True,
        )
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(
                    0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
                )
        finally:
            stop = getattr(server, "shutdown", None)
            if callable(stop):
                stop()
    return ExitCode.OK
