"""``pharox-redis metrics --port N``: serve the pools' Prometheus metrics over HTTP.

It calls :func:`pharox_redis.metrics.serve_metrics` (the ``metrics`` extra, which brings
``prometheus_client``) and serves until Ctrl-C (exit 0) or for ``--seconds``. The gauges
are read from Redis on each scrape, so one exporter reports the whole fleet's pools; the
per-process counters (acquires, misses, latency) belong in the workers' own registries
(``ManagerMetrics``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
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
    metrics.add_argument(
        "--port", type=int, default=9464, help="HTTP port (default 9464; 0: any free port)"
    )
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
            server, _ = serve(args.port, storage, addr=args.addr)
        except OSError as exc:
            raise CliError(
                ExitCode.USAGE, f"cannot listen on {args.addr}:{args.port}: {exc.strerror}"
            ) from None
        try:
            port = server.server_port  # the one chosen for --port 0
            url = f"http://{args.addr}:{port}/metrics"
            if args.json:
                print(json.dumps({"serving": url}))
            else:
                print(f"serving metrics on {url} (Ctrl-C to stop)")
            sys.stdout.flush()
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            while deadline is None or time.monotonic() < deadline:
                left = 0.5 if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(0.5, left)))
        except KeyboardInterrupt:  # the way to stop serving: not an error
            pass
        finally:
            server.shutdown()
    return ExitCode.OK
