"""``AsyncRedisStorage``: pharox's ``IAsyncStorage`` on a ``redis.asyncio`` client.

The asyncio twin of :class:`~pharox_redis.RedisStorage`: the same sans-I/O core
(``core.py``) yields the same batches, and this class only awaits them. Sharing the core
keeps the two from drifting; only the execution loop below is written twice.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, TypeVar
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
from redis.exceptions import NoScriptError, RedisError

from .audit import AuditReport, audit
from .core import Batch, Call, Op
from .execution import (
    StorageShell,
    default_client_options,
    raise_errors,
    scripts_lost,
    single,
    split_options,
    storage_error,
    with_scripts_replies,
)

T = TypeVar("T")


class AsyncRedisStorage(StorageShell, IAsyncStorage):
    """Proxy pools, leases and health history in Redis, for asyncio code.

    Parameters
    ----------
    client:
        A ``redis.asyncio.Redis`` client (``decode_responses`` on or off).
    prefix:
        Namespace of every key (see :class:`~pharox_redis.keys.KeySchema`).
    lease_retention_seconds:
        How long released and reclaimed lease records stay readable.
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

    client: redis.asyncio.Redis

    @classmethod
    def from_url(
        cls, url: str, *, socket_timeout: float = 5.0, **options: Any
    ) -> AsyncRedisStorage:
        """Connect to ``url`` (``redis://``, ``rediss://`` or ``unix://``).

        Parameters
        ----------
        url:
            The Redis URL.
        socket_timeout:
            Seconds before a connect or a command times out; the call then raises
            :class:`~pharox_redis.errors.RedisStorageError`.
        **options:
            ``prefix``, ``lease_retention_seconds`` and ``health_history`` go to the
            storage; anything else to ``redis.asyncio.Redis.from_url``.

        """
        own = split_options(options)
        client = redis.asyncio.Redis.from_url(
            url, **{**default_client_options(socket_timeout, asyncio=True), **options}
        )
        return cls(client, **own)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

    # ------------------------------------------------------------------ execution

    async def run(self, op: Op[T]) -> T:
        """Drive a core operation to its result, one round trip per batch."""
        try:
            batch = next(op)
            while True:
                batch = op.send(await self._execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _execute(self, batch: Batch) -> list[Any]:
        try:
            if single(batch):
                return [await self._execute_one(batch.calls[0])]
            return await self._execute_pipeline(batch)
        except RedisError as exc:
            raise storage_error(exc) from exc

    async def _execute_one(self, call: Call) -> Any:
        try:
            return await self._send(self.client, call)
        except NoScriptError:
            replies = await self._resend_with_scripts(Batch((call,)))
            return raise_errors(replies)[0]

    async def _execute_pipeline(self, batch: Batch) -> list[Any]:
        pipe = self.client.pipeline(transaction=batch.atomic)
        for call in batch.calls:
            self._send(pipe, call)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if scripts_lost(batch, replies):
            replies = await self._resend_with_scripts(batch)
        return raise_errors(replies)

    async def _resend_with_scripts(self, batch: Batch) -> list[Any]:
        """Send a batch again, each script loaded in one transaction with its call.

        Redis lost its scripts (restart, failover, SCRIPT FLUSH); loading them in a round
        trip of their own would leave room for another flush before the re-send.
        """
        pipe = self.client.pipeline(transaction=batch.atomic)
        where = self._queue_with_scripts(pipe, batch)
        return with_scripts_replies(where, await pipe.execute(raise_on_error=False))

    # ------------------------------------------------------------------ IAsyncStorage

    async def find_available_proxy(
        self,
        pool_name: str,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[Proxy]:
        """Return the first available proxy of a pool in selector order matching filters."""
        return await self.run(self.core.find_available_proxy(pool_name, filters, selector))

    async def create_lease(self, proxy: Proxy, consumer_name: str, duration_seconds: int) -> Lease:
        """Lease a proxy atomically; raises ProxyUnavailableError when it is full."""
        return await self.run(self.core.create_lease(proxy, consumer_name, duration_seconds))

    async def ensure_consumer(self, consumer_name: str) -> UUID:
        """Return a consumer's id, creating it if needed (concurrent callers get one id)."""
        return await self.run(self.core.ensure_consumer(consumer_name))

    async def release_lease(self, lease: Lease) -> None:
        """Release a lease; idempotent."""
        await self.run(self.core.release_lease(lease))

    async def cleanup_expired_leases(self) -> int:
        """Reclaim expired leases of every pool and return how many."""
        return await self.run(self.core.cleanup_expired_leases())

    async def apply_health_check_result(self, result: HealthCheckResult) -> Optional[Proxy]:
        """Apply a health check to its proxy; None when the proxy is unknown."""
        return await self.run(self.core.apply_health_check_result(result))

    async def get_last_health_result(self, proxy_id: UUID) -> Optional[HealthCheckResult]:
        """Return the newest health result of a proxy, or None."""
        return await self.run(self.core.last_health_result(proxy_id))

    async def get_pool_stats(self, pool_name: str) -> Optional[PoolStatsSnapshot]:
        """Return a pool's counters in one round trip, or None for an unknown pool."""
        return await self.run(self.core.get_pool_stats(pool_name))

    async def add_proxies_bulk(self, proxies: Sequence[Proxy]) -> int:
        """Insert or update many proxies, pipelined; nothing is written if a pool is missing."""
        return await self.run(self.core.save_proxies(list(proxies)))

    async def save_pool(self, pool: ProxyPool) -> None:
        """Insert or update a pool."""
        await self.run(self.core.save_pool(pool))

    async def get_pool(self, pool_id: str) -> ProxyPool:
        """Return a pool by id."""
        return await self.run(self.core.get_pool(pool_id))

    async def list_pools(self) -> Sequence[ProxyPool]:
        """Return all pools."""
        return await self.run(self.core.list_pools())

    async def delete_pool(self, pool_id: str) -> None:
        """Delete a pool and everything in it."""
        await self.run(self.core.delete_pool(pool_id))

    async def save_proxy(self, proxy: Proxy) -> None:
        """Insert or update a proxy, keeping its lease count."""
        await self.run(self.core.save_proxies([proxy]))

    async def get_proxy(self, proxy_id: str) -> Proxy:
        """Return a proxy by id."""
        return await self.run(self.core.require_proxy(proxy_id))

    async def list_proxies(self, pool_id: str) -> Sequence[Proxy]:
        """Return all proxies of a pool."""
        return await self.run(self.core.list_proxies(pool_id))

    async def delete_proxy(self, proxy_id: str) -> None:
        """Delete a proxy."""
        await self.run(self.core.delete_proxy(proxy_id))

    async def get_lease(self, lease_id: str) -> Optional[Lease]:
        """Return a lease by id, or None."""
        return await self.run(self.core.get_lease(lease_id))

    async def list_leases(self, consumer_id: Optional[str] = None) -> Sequence[Lease]:
        """Return leases, optionally of one consumer."""
        return await self.run(self.core.list_leases(consumer_id))

    async def save_health_record(self, record: ProxyHealthRecord) -> None:
        """Store a health record."""
        await self.run(self.core.save_health_record(record))

    async def list_health_records(
        self, proxy_id: UUID, limit: int = 100
    ) -> Sequence[ProxyHealthRecord]:
        """Return a proxy's most recent health records, newest first."""
        return await self.run(self.core.health_records(proxy_id, limit))

    # ------------------------------------------------------------------ pharox helpers

    async def add_pool(self, pool: ProxyPool) -> None:
        """Alias of ``save_pool``, as on pharox's in-memory adapters."""
        await self.save_pool(pool)

    async def add_proxy(self, proxy: Proxy) -> None:
        """Alias of ``save_proxy``, as on pharox's in-memory adapters."""
        await self.save_proxy(proxy)

    async def add_consumer(self, consumer: Consumer) -> None:
        """Register a consumer with its given id."""
        await self.run(self.core.add_consumer(consumer.id, consumer.name))

    async def get_proxy_by_id(self, proxy_id: UUID) -> Optional[Proxy]:
        """Return a proxy by id, or None."""
        return await self.run(self.core.get_proxy(proxy_id))

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
        return await self.run(audit(self.core, pool_name, repair))
