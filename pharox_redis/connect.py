"""Connecting: the options ``from_url`` gives redis-py, and what the storages share.

Both storages take a client (``RedisStorage(client)``) or build one (``from_url``), hold a
:class:`~pharox_redis.operations.context.Context` (key schema, settings, caches) and an
executor (``executor.py``); :class:`StorageBase` is that shared constructor.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .executor import BatchPlan
from .keys import KeySchema
from .operations.context import Context

RETRIED_ERRORS = (redis.ConnectionError,)  # what redis-py's Retry re-sends (from_url)
DEFAULT_LEASE_RETENTION_SECONDS = 300.0
DEFAULT_HEALTH_HISTORY = 100
STORAGE_OPTIONS = (
    "prefix",
    "lease_retention_seconds",
    "health_history",
    "wait_replicas",
    "wait_timeout",
)


class StorageBase:
    """The constructor both storages share.

    Parameters
    ----------
    client:
        A redis-py client (``decode_responses`` on or off): ``redis.Redis`` for
        ``RedisStorage``, ``redis.asyncio.Redis`` for ``AsyncRedisStorage``.
    prefix:
        Namespace of every key (see :class:`~pharox_redis.keys.KeySchema`).
    lease_retention_seconds:
        How long released and reclaimed lease records stay readable (``get_lease``,
        ``list_leases``, idempotent retries). Memory grows with lease rate times retention.
    health_history:
        Most health records kept per proxy.
    wait_replicas:
        Replicas that must have a new lease before it is handed out (``WAIT`` pipelined
        after every lease-making call; default 0, no waiting). When fewer acknowledge it
        within ``wait_timeout``, the lease is released and
        :class:`~pharox_redis.errors.NotReplicatedError` raised.
    wait_timeout:
        Seconds ``WAIT`` blocks at most (default 0.05).

    """

    executor_class: type[BatchPlan]

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "pharox",
        lease_retention_seconds: float = DEFAULT_LEASE_RETENTION_SECONDS,
        health_history: int = DEFAULT_HEALTH_HISTORY,
        wait_replicas: int = 0,
        wait_timeout: float = 0.05,
    ) -> None:
        self.client = client
        self.context = Context(
            KeySchema(prefix), lease_retention_seconds, health_history, wait_replicas, wait_timeout
        )
        self.executor = self.executor_class(client)


def split_options(options: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the storage's own options from ``from_url`` keyword arguments."""
    return {k: options.pop(k) for k in STORAGE_OPTIONS if k in options}


def client_options(socket_timeout: float, asyncio: bool = False) -> dict[str, Any]:
    """Return the connection options ``from_url`` uses: timeouts and a bounded retry.

    A dropped or refused connection (``ConnectionError``, which includes Redis still
    loading its data after a restart) is retried 3 times, 0.04, 0.08 and 0.16 s apart:
    re-sending is safe because every script is idempotent. A timeout is not retried here:
    ``socket_timeout`` is what the caller agreed to wait, and redis-py would wait it again
    on every attempt. The managers' own ``retries`` re-send a lost acquire or release,
    timeouts included.

    No ``health_check_interval``: redis-py runs its PING under the same ``Retry``, nested
    inside the command's own, so against a stalled server one command waited 16 socket
    timeouts; a dead idle connection is caught by the retry of the command instead.
    redis.asyncio needs its own ``Retry`` class: the sync one would not await the attempt
    it retries.
    """
    retry_class = AsyncRetry if asyncio else Retry
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": retry_class(
            ExponentialBackoff(cap=0.5, base=0.02), retries=3, supported_errors=RETRIED_ERRORS
        ),
        "retry_on_error": list(RETRIED_ERRORS),
    }


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (``redis://user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"
