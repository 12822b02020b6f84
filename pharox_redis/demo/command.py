"""The demo's command line: options, where the URL comes from, the steps and the exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Optional

import redis

from ..connect import redact
from ..errors import RedisStorageError
from ..storage import RedisStorage
from .backend import FAKEREDIS_HINT, BadUrlError, open_backend, remove_namespace
from .pool import POOL_NAME, check_pool, create_pool
from .request import send_request
from .stress import compare_managers
from .tour import tour


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv:
        Arguments without the program name.

    Returns
    -------
    argparse.Namespace
        ``url`` (str or None) and ``fakeredis`` (bool).

    """
    parser = argparse.ArgumentParser(
        prog="python -m pharox_redis",
        description="Demo of pharox-redis: proxy leasing on Redis.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--url",
        help="Redis URL to use (overrides REDIS_URL); "
        "the demo writes under a unique prefix and deletes it afterwards",
    )
    group.add_argument(
        "--fakeredis",
        action="store_true",
        help="use the in-process fakeredis (demos and tests only)",
    )
    return parser.parse_args(argv)


def run(storage: RedisStorage, say: Callable[[str], None]) -> bool:
    """Run every step of the demo on a storage.

    Parameters
    ----------
    storage:
        An empty namespace to work in.
    say:
        Where output lines go.

    Returns
    -------
    bool
        True when every lease came back (the pool ends with zero leases) and the audit is
        clean.

    """
    create_pool(storage, say)
    tour(storage, say)
    compare_managers(storage, say)
    send_request(storage, say)
    return check_pool(storage, say)


def main(argv: list[str]) -> int:
    """Run the demo.

    Parameters
    ----------
    argv:
        Command line arguments (without the program name).

    Returns
    -------
    int
        0 on success, 1 when no backend is usable or a lease was not returned, 2 for a URL
        that is not a Redis URL, 3 when the server cannot be reached.

    """
    args = parse_args(argv)
    url: Optional[str] = args.url
    why_url = "--url given"
    if url is None and os.environ.get("REDIS_URL"):
        url, why_url = os.environ["REDIS_URL"], "REDIS_URL set"
    try:
        with open_backend(url, args.fakeredis, why_url) as backend:
            print(f"backend: {backend.description}")
            try:
                clean = run(backend.storage, print)
            finally:
                if backend.shared:
                    removed = remove_namespace(backend.storage)
                    print(
                        f"cleanup: deleted pool {POOL_NAME!r} and {removed} leftover key(s) "
                        "under the demo prefix"
                    )
    except ModuleNotFoundError as exc:
        if exc.name != "fakeredis":
            raise
        print(FAKEREDIS_HINT)
        return 1
    except BadUrlError as exc:  # the command line's code 2
        where = redact(url) if url is not None else "the demo's Redis"
        print(f"error: {where}: {exc}", file=sys.stderr)
        return 2
    except (RedisStorageError, redis.RedisError) as exc:  # the command line's code 3
        where = redact(url) if url is not None else "the demo's Redis"
        print(f"error: {where}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 3
    if not clean:
        print("ERROR: some leases were not returned")
        return 1
    print("all leases back to 0")
    return 0
