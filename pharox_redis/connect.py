"""Connecting: the clients ``from_url`` builds, and the constructor both storages share.

Both storages take a client (``RedisStorage(client)``) or build one (``from_url``), hold a
:class:`~pharox_redis.operations.context.Context` (key schema, settings, caches) and an
executor: the plain one for a server or a Sentinel master, the cluster one (``cluster.py``)
for a ``RedisCluster`` client.

URLs ``from_url`` understands:

* ``redis://``, ``rediss://``, ``unix://``: one server;
* ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS), or any of the
  above with ``cluster=True``: a Redis Cluster, found from these startup nodes;
* ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://``): the master Sentinel names for ``service``, found again after a
  failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .cluster import AsyncClusterExecutor, ClusterExecutor
from .executor import AsyncExecutor, Executor
from .failover import DEFAULT_FAILOVER_TIMEOUT, AsyncSentinelExecutor, SentinelExecutor
from .keys import KeySchema
from .operations.context import Context
from .outcome import DEFAULT_POLICY, OutcomePolicy

RETRIED_ERRORS = (redis.ConnectionError,)  # what redis-py's Retry re-sends (from_url)
DEFAULT_LEASE_RETENTION_SECONDS = 300.0
DEFAULT_HEALTH_HISTORY = 100
STORAGE_OPTIONS = (
    "prefix",
    "lease_retention_seconds",
    "health_history",
    "wait_replicas",
    "wait_timeout",
    "failover_timeout",
    "functions",
    "outcomes",
)
CLUSTER_CLIENTS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
SENTINEL_POOLS = (
    redis.sentinel.SentinelConnectionPool,
    redis.asyncio.sentinel.SentinelConnectionPool,
)


class StorageBase:
    """The constructor both storages share.

    Parameters
    ----------
    client:
        A redis-py client (``decode_responses`` on or off): ``redis.Redis``, a
        ``RedisCluster`` or a Sentinel's ``master_for(...)`` for ``RedisStorage``; their
        ``redis.asyncio`` counterparts for ``AsyncRedisStorage``.
    prefix:
        Namespace of every key (see :class:`~pharox_redis.keys.KeySchema`).
    lease_retention_seconds:
        How long released and reclaimed lease records stay readable (``get_lease``,
        ``list_leases``, idempotent retries). Memory grows with lease rate times retention.
    health_history:
        Most health records kept per proxy.
    wait_replicas:
        Replicas that must have a new lease (and a release) before the call returns
        (``WAIT`` pipelined after every lease-making or releasing call, to the pool's node;
        default 0, no waiting). When fewer acknowledge a new lease within ``wait_timeout``,
        it is released and :class:`~pharox_redis.errors.NotReplicatedError` raised.
    wait_timeout:
        Seconds ``WAIT`` blocks at most (default 0.05).
    failover_timeout:
        On a Redis Cluster or behind Sentinel, seconds a batch is sent again while a master
        is replaced or a slot moves (default 15; ``failover.py``).
    functions:
        Call the Lua scripts as Redis Functions (``FCALL`` of one library) where the server
        has them (default True): the shared Lua code is then defined once per load, not on
        every call. On Redis < 7, or when the ACL refuses ``FCALL`` or ``FUNCTION LOAD``,
        the storage falls back to ``EVALSHA`` by itself; False uses ``EVALSHA`` only.
    outcomes:
        How pools react to the outcomes reported with releases: cool-downs after failures,
        blocks per target domain, the latency average (:class:`~pharox_redis.OutcomePolicy`,
        defaults documented there).

    """

    executor: Executor | AsyncExecutor
    executor_class: type[Executor] | type[AsyncExecutor]
    cluster_executor_class: type[ClusterExecutor] | type[AsyncClusterExecutor]
    sentinel_executor_class: type[SentinelExecutor] | type[AsyncSentinelExecutor]

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "pharox",
        lease_retention_seconds: float = DEFAULT_LEASE_RETENTION_SECONDS,
        health_history: int = DEFAULT_HEALTH_HISTORY,
        wait_replicas: int = 0,
        wait_timeout: float = 0.05,
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
        functions: bool = True,
        outcomes: OutcomePolicy = DEFAULT_POLICY,
    ) -> None:
        self.client = client
        self.context = Context(
            KeySchema(prefix),
            lease_retention_seconds,
            health_history,
            wait_replicas,
            wait_timeout,
            outcomes,
        )
        if isinstance(client, CLUSTER_CLIENTS):
            self.executor = self.cluster_executor_class(client, failover_timeout, functions)
        elif isinstance(getattr(client, "connection_pool", None), SENTINEL_POOLS):
            self.executor = self.sentinel_executor_class(client, failover_timeout, functions)
        else:
            self.executor = self.executor_class(client, functions)


@dataclass(frozen=True)
class Flavor:
    """The redis-py classes ``from_url`` builds clients with: sync or asyncio."""

    redis: Any
    cluster: Any
    cluster_node: Any
    sentinel: Any
    retry: Any


SYNC = Flavor(
    redis.Redis,
    redis.cluster.RedisCluster,
    redis.cluster.ClusterNode,
    redis.sentinel.Sentinel,
    Retry,
)
ASYNC = Flavor(
    redis.asyncio.Redis,
    redis.asyncio.cluster.RedisCluster,
    redis.asyncio.cluster.ClusterNode,
    redis.asyncio.sentinel.Sentinel,
    AsyncRetry,
)


def split_options(options: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the storage's own options from ``from_url`` keyword arguments."""
    return {k: options.pop(k) for k in STORAGE_OPTIONS if k in options}


def client_from_url(
    url: str, flavor: Flavor, socket_timeout: float, options: dict[str, Any]
) -> Any:
    """Build the client a ``from_url`` URL names (see the module docstring).

    Raises
    ------
    ValueError
        For a URL scheme this module does not know, or a Sentinel URL without a service.

    """
    scheme, sep, rest = url.partition("://")
    base, _, shape = scheme.partition("+")
    if options.pop("cluster", False):
        shape = shape or "cluster"
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    if shape == "cluster":
        auth, hosts, tail = _hosts(rest)
        nodes = [flavor.cluster_node(host, port) for host, port in hosts]
        first = f"{base}://{auth}{hosts[0][0]}:{hosts[0][1]}{tail}"
        return flavor.cluster.from_url(first, startup_nodes=nodes, **{**timeouts, **options})
    if shape == "sentinel":
        return _sentinel_master(base, rest, flavor, socket_timeout, options)
    if shape or not sep:
        raise ValueError(f"unknown Redis URL scheme {scheme!r} (see RedisStorage.from_url)")
    return flavor.redis.from_url(url, **{**client_options(socket_timeout, flavor), **options})


def _sentinel_master(
    base: str, rest: str, flavor: Flavor, socket_timeout: float, options: dict[str, Any]
) -> Any:
    """Return ``Sentinel(...).master_for(service)`` for a ``redis+sentinel://`` URL."""
    auth, hosts, tail = _hosts(rest)
    path = [part for part in tail.partition("?")[0].split("/") if part]
    if not path:
        raise ValueError("a redis+sentinel:// URL names the service: .../service[/db]")
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    user, _, password = auth.rstrip("@").partition(":")
    credentials = {"username": user or None, "password": password or None} if auth else {}
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    sentinel = flavor.sentinel(hosts, sentinel_kwargs=timeouts, ssl=base == "rediss", **credentials)
    master_options = client_options(socket_timeout, flavor)
    return sentinel.master_for(service, db=db, **{**master_options, **options})


def _hosts(rest: str) -> tuple[str, list[tuple[str, int]], str]:
    """Split ``[auth@]host:port[,host:port...][/tail]`` into auth, hosts and the tail."""
    authority, slash, path = rest.partition("/")
    auth, at, hostlist = authority.rpartition("@")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host else 6379))
    return (auth + at), hosts, slash + path


def client_options(socket_timeout: float, flavor: Flavor = SYNC) -> dict[str, Any]:
    """Return the connection options ``from_url`` uses: timeouts and a bounded retry.

    A dropped or refused connection (``ConnectionError``, which includes Redis still
    loading its data after a restart) is retried 3 times, 0.04, 0.08 and 0.16 s apart:
    re-sending is safe because every script is idempotent. A timeout is not retried here:
    ``socket_timeout`` is what the caller agreed to wait, and redis-py would wait it again
    on every attempt. The managers' own ``retries`` re-send a lost acquire or release,
    timeouts included; behind Sentinel and on a cluster the executor resends a batch while
    a master is replaced (``failover.py``).

    No ``health_check_interval``: redis-py runs its PING under the same ``Retry``, nested
    inside the command's own, so against a stalled server one command waited 16 socket
    timeouts; a dead idle connection is caught by the retry of the command instead.
    redis.asyncio needs its own ``Retry`` class: the sync one would not await the attempt
    it retries.
    """
    retry = flavor.retry(
        ExponentialBackoff(cap=0.5, base=0.02), retries=3, supported_errors=RETRIED_ERRORS
    )
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": retry,
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
