"""What every command that talks to Redis shares: the URL, the storage, pools by name, JSON.

The URL is ``--url``, else ``REDIS_URL``, else ``redis://127.0.0.1:6379/0``; a bare
``host:port`` means ``redis://host:port``. Opening checks the connection at once (one
``PING``), so an unreachable server is reported before anything else, with the URL's
password redacted.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import redis
from pharox import PoolNotFoundError, ProxyPool

from ..connect import redact
from ..errors import RedisStorageError
from ..keys import KeySchema
from ..operations import resolve
from ..storage import RedisStorage
from .errors import CliError, ExitCode, one_line

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def resolve_url(given: Optional[str]) -> str:
    """Return the URL to use: ``given``, else ``REDIS_URL``, else the default.

    Parameters
    ----------
    given:
        The ``--url`` option, or None.

    Returns
    -------
    str
        A URL with a scheme (``host:port`` becomes ``redis://host:port``).

    """
    url = given or os.environ.get("REDIS_URL") or DEFAULT_URL
    return url if "://" in url else f"redis://{url}"


@contextmanager
def open_storage(args: argparse.Namespace) -> Iterator[RedisStorage]:
    """Connect to the server the options name, check it answers, and close it on leaving.

    Raises
    ------
    CliError
        ``USAGE`` for a URL that is not a Redis URL, ``CONNECTION`` when the server cannot be
        reached or fails a command (also from inside the block).

    """
    url = resolve_url(args.url)
    where = redact(url)
    try:
        KeySchema(args.prefix)
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, f"--prefix: {one_line(exc)}") from None
    try:
        storage = RedisStorage.from_url(url, prefix=args.prefix, socket_timeout=args.timeout)
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, f"--url {where}: {one_line(exc)}") from None
    try:
        with storage.client:
            storage.client.ping()
            yield storage
    except (RedisStorageError, redis.RedisError) as exc:
        raise CliError(ExitCode.CONNECTION, f"{where}: {one_line(exc)}") from None


def find_pool(storage: RedisStorage, name: str) -> ProxyPool:
    """Return the pool called ``name`` (``get_pool_by_name``).

    Raises
    ------
    CliError
        ``NOT_FOUND``, naming a pool whose name differs only in case when there is one.

    """
    try:
        return storage.get_pool_by_name(name)
    except PoolNotFoundError:
        pass
    hint = [p.name for p in storage.list_pools() if p.name.casefold() == name.casefold()]
    also = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise CliError(ExitCode.NOT_FOUND, f"no pool named {name!r}{also}")


def consumer_names(storage: RedisStorage) -> dict[str, str]:
    """Return every consumer's id (as text) and name."""
    return storage.executor.run(resolve.consumer_names(storage.context))


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (datetimes and UUIDs as text)."""
    print(json.dumps(value, indent=2, default=str))
