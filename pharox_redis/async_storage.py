"""``AsyncRedisStorage``: pharox's ``IAsyncStorage`` on a ``redis.asyncio`` client.

The asyncio twin of :class:`~pharox_redis.RedisStorage`: each method awaits the same sans-I/O
operation (``operations/``) on its :class:`~pharox_redis.executor.AsyncExecutor`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence
from uuid import UUID

import redis.asyncio
from pharox import (
    Consumer,
    HealthCheckResult,
    Lease,
    PoolStatsSnapshot,
    Proxy,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyPool,
    SelectorStrategy,
)
from pharox.storage import IAsyncStorage

from .cluster import AsyncClusterExecutor
from .connect import ASYNC, StorageBase, client_from_url, split_options
from .executor import AsyncExecutor
from .failover import AsyncSentinelExecutor
from .operations import cleanup, health, leases, pools, resolve, selection
from .operations import proxies as proxy_ops
from .operations.audit import AuditReport, audit
from .operations.proxies import SavedProxies
from .outcome import OutcomeStats


class AsyncRedisStorage(StorageBase, IAsyncStorage):
    """Proxy pools, leases and health history in Redis, for asyncio code.

    Parameters are those of :class:`~pharox_redis.connect.StorageBase`: a
    ``redis.asyncio.Redis`` client, then ``prefix``, ``lease_retention_seconds``,
    ``health_history``, ``wait_replicas``, ``wait_timeout`` and ``failover_timeout``.
    """

    client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
    executor: AsyncExecutor
    executor_class = AsyncExecutor
    sentinel_executor_class = AsyncSentinelExecutor
    cluster_executor_class = AsyncClusterExecutor

    @classmethod
    def from_url(
        cls, url: str, *, socket_timeout: float = 5.0, **options: Any
    ) -> AsyncRedisStorage:
        """Connect to ``url``: one server, a Redis Cluster or a Sentinel-managed master.

        Parameters
        ----------
        url:
            ``redis://``, ``rediss://`` or ``unix://`` for one server;
            ``redis+cluster://host:port[,host:port...]`` (or ``cluster=True``) for a Redis
            Cluster; ``redis+sentinel://host:port[,host:port...]/service[/db]`` for the
            master Sentinel names (``rediss+...`` for TLS).
        socket_timeout:
            Seconds before a connect or a command times out; the call then raises
            :class:`~pharox_redis.errors.RedisStorageError`.
        **options:
            The storage's own options (see the class) go to the storage; anything else to
            the redis-py client (``redis.asyncio.Redis.from_url``, ``RedisCluster.from_url`` or
            ``Sentinel.master_for``).

        """
        own = split_options(options)
        return cls(client_from_url(url, ASYNC, socket_timeout, options), **own)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

    # ------------------------------------------------------------------ IAsyncStorage

    async def find_available_proxy(
        self,
        pool_name: str,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[Proxy]:
        """Return the first available proxy of a pool in selector order matching filters."""
        op = selection.find_available_proxy(self.context, pool_name, filters, selector)
        return await self.executor.run(op)

    async def create_lease(self, proxy: Proxy, consumer_name: str, duration_seconds: int) -> Lease:
        """Lease a proxy atomically; raises ProxyUnavailableError when it is full."""
        op = leases.create_lease(self.context, proxy, consumer_name, duration_seconds)
        return await self.executor.run(op)

    async def ensure_consumer(self, consumer_name: str) -> UUID:
        """Return a consumer's id, creating it if needed (concurrent callers get one id)."""
        return await self.executor.run(resolve.ensure_consumer(self.context, consumer_name))

    async def release_lease(self, lease: Lease) -> None:
        """Release a lease; idempotent."""
        await self.executor.run(leases.release(self.context, lease))

    async def cleanup_expired_leases(self) -> int:
        """Reclaim expired leases of every pool and return how many."""
        return await self.executor.run(cleanup.cleanup_expired_leases(self.context))

    async def apply_health_check_result(self, result: HealthCheckResult) -> Optional[Proxy]:
        """Apply a health check to its proxy; None when the proxy is unknown."""
        return await self.executor.run(health.apply_health_check_result(self.context, result))

    async def get_last_health_result(self, proxy_id: UUID) -> Optional[HealthCheckResult]:
        """Return the newest health result of a proxy, or None."""
        return await self.executor.run(health.last_health_result(self.context, proxy_id))

    async def get_pool_stats(self, pool_name: str) -> Optional[PoolStatsSnapshot]:
        """Return a pool's counters in one round trip, or None for an unknown pool."""
        return await self.executor.run(pools.get_pool_stats(self.context, pool_name))

    async def get_outcome_stats(self, pool_name: str) -> Optional[OutcomeStats]:
        """Return a pool's counters with its cool-downs and blocks (one round trip), or None.

        See :class:`~pharox_redis.outcome.OutcomeStats`.
        """
        return await self.executor.run(pools.get_outcome_stats(self.context, pool_name))

    async def add_proxies_bulk(self, proxies: Sequence[Proxy]) -> int:
        """Insert or update many proxies by address (see :meth:`save_proxies`); return how many."""
        saved = await self.executor.run(proxy_ops.save_proxies(self.context, list(proxies)))
        return len(saved.ids)

    async def save_pool(self, pool: ProxyPool) -> None:
        """Insert or update a pool."""
        await self.executor.run(pools.save_pool(self.context, pool))

    async def get_pool(self, pool_id: str) -> ProxyPool:
        """Return a pool by id."""
        return await self.executor.run(pools.get_pool(self.context, pool_id))

    async def list_pools(self) -> Sequence[ProxyPool]:
        """Return all pools."""
        return await self.executor.run(pools.list_pools(self.context))

    async def delete_pool(self, pool_id: str) -> None:
        """Delete a pool and everything in it."""
        await self.executor.run(pools.delete_pool(self.context, pool_id))

    async def save_proxy(self, proxy: Proxy) -> None:
        """Insert or update a proxy by address (see ``save_proxies``), keeping its lease count."""
        await self.executor.run(proxy_ops.save_proxies(self.context, [proxy]))

    async def get_proxy(self, proxy_id: str) -> Proxy:
        """Return a proxy by id."""
        return await self.executor.run(proxy_ops.require_proxy(self.context, proxy_id))

    async def list_proxies(self, pool_id: str) -> Sequence[Proxy]:
        """Return all proxies of a pool."""
        return await self.executor.run(proxy_ops.list_proxies(self.context, pool_id))

    async def delete_proxy(self, proxy_id: str) -> None:
        """Delete a proxy."""
        await self.executor.run(proxy_ops.delete_proxy(self.context, proxy_id))

    async def get_lease(self, lease_id: str) -> Optional[Lease]:
        """Return a lease by id, or None."""
        return await self.executor.run(leases.get_lease(self.context, lease_id))

    async def list_leases(
        self,
        consumer_id: Optional[str] = None,
        *,
        pool_name: Optional[str] = None,
        active_only: bool = False,
    ) -> Sequence[Lease]:
        """Return leases by acquire time, optionally of one consumer or pool, or active only.

        Parameters
        ----------
        consumer_id:
            A consumer's id, or its name (an unknown name has no leases).
        pool_name:
            Only this pool's leases; PoolNotFoundError when there is no such pool.
        active_only:
            Leave out the released records kept for ``lease_retention_seconds`` (pharox's
            contract lists them, so they are listed by default).

        """
        op = leases.list_leases(self.context, consumer_id, pool_name, active_only)
        return await self.executor.run(op)

    async def save_health_record(self, record: ProxyHealthRecord) -> None:
        """Store a health record."""
        await self.executor.run(health.save_health_record(self.context, record))

    async def list_health_records(
        self, proxy_id: UUID, limit: int = 100
    ) -> Sequence[ProxyHealthRecord]:
        """Return a proxy's most recent health records, newest first."""
        return await self.executor.run(health.health_records(self.context, proxy_id, limit))

    # ------------------------------------------------------------------ identity and names

    async def save_proxies(self, proxies: Sequence[Proxy]) -> SavedProxies:
        """Insert or update proxies by address and say which were created.

        A proxy's address (protocol, host in lower case, port and user name) is its
        identity in its pool: saving a proxy whose address a stored proxy of the pool holds
        updates that proxy, which keeps its stored id (the id of the proxy given is then
        not used). Saving the same list twice therefore leaves the pool as the first save
        did. Atomic per pool and chunk of 500; nothing is written when a proxy is refused.

        Returns
        -------
        SavedProxies
            The id each proxy is stored under and whether it was created or updated.

        Raises
        ------
        PoolNotFoundError
            When a proxy's pool does not exist.
        ValueError
            When a proxy is invalid, is stored in another pool, or is a stored proxy given
            the address of another stored proxy.

        """
        return await self.executor.run(proxy_ops.save_proxies(self.context, list(proxies)))

    async def get_pool_by_name(self, name: str) -> ProxyPool:
        """Return a pool by name; PoolNotFoundError when there is none (as ``get_pool``)."""
        return await self.executor.run(pools.get_pool_by_name(self.context, name))

    async def ensure_pool(self, name: str, description: Optional[str] = None) -> ProxyPool:
        """Return the pool called ``name``, creating it when there is none.

        The way to run a setup twice: ``save_pool`` of a new ``ProxyPool`` whose name is
        taken raises ValueError, ``ensure_pool`` returns the stored pool (with its id and
        description; ``description`` is used only when the pool is created).
        """
        return await self.executor.run(pools.ensure_pool(self.context, name, description))

    async def list_pool_stats(self) -> list[PoolStatsSnapshot]:
        """Return every pool's counters, sorted by pool name, in two round trips."""
        return await self.executor.run(pools.list_pool_stats(self.context))

    async def list_outcome_stats(self) -> list[OutcomeStats]:
        """Return every pool's counters, cool-downs and blocks by pool name (two round trips)."""
        return await self.executor.run(pools.list_outcome_stats(self.context))

    # ------------------------------------------------------------------ pharox helpers

    async def add_pool(self, pool: ProxyPool) -> None:
        """Alias of ``save_pool`` for ``pharox.utils.bootstrap`` and ``benchmarks``."""
        await self.save_pool(pool)

    async def add_proxy(self, proxy: Proxy) -> None:
        """Alias of ``save_proxy`` for ``pharox.utils.bootstrap`` and ``benchmarks``."""
        await self.save_proxy(proxy)

    async def add_consumer(self, consumer: Consumer) -> None:
        """Register a consumer with its given id."""
        await self.executor.run(resolve.add_consumer(self.context, consumer.id, consumer.name))

    async def get_proxy_by_id(self, proxy_id: UUID) -> Optional[Proxy]:
        """Return a proxy by id, or None."""
        return await self.executor.run(proxy_ops.get_proxy(self.context, proxy_id))

    # ------------------------------------------------------------------ audit

    async def audit(self, pool_name: Optional[str] = None, *, repair: bool = False) -> AuditReport:
        """Recompute what the scripts derive from the records and report every drift.

        Parameters
        ----------
        pool_name:
            Audit this pool only; by default every pool, the registry and the global
            deadline index.
        repair:
            Fix the drift found: each pool atomically in one script call, an interrupted
            ``save_pool`` or ``delete_pool`` by finishing it.

        Returns
        -------
        AuditReport
            What was examined and the drift found (``report.clean`` when there is none).

        """
        return await self.executor.run(audit(self.context, pool_name, repair))
