"""``RedisStorage``: pharox's ``IStorage`` on a redis-py client.

The class only executes the batches the sans-I/O core (``core.py``) yields; every reply is
read as bytes (``NEVER_DECODE``), so the client's ``decode_responses`` setting does not
matter.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, TypeVar
from uuid import UUID

import redis
from pharox import (
    Consumer,
    HealthCheckResult,
    IStorage,
    Lease,
    PoolStatsSnapshot,
    Proxy,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyPool,
    SelectorStrategy,
)
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


class RedisStorage(StorageShell, IStorage):
    """Proxy pools, leases and health history in Redis, shared by any number of processes.

    Parameters
    ----------
    client:
        A redis-py client (``decode_responses`` on or off).
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

    client: redis.Redis

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = 5.0, **options: Any) -> RedisStorage:
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
            storage; anything else to ``redis.Redis.from_url``.

        """
        own = split_options(options)
        client = redis.Redis.from_url(url, **{**default_client_options(socket_timeout), **options})
        return cls(client, **own)

    # ------------------------------------------------------------------ execution

    def run(self, op: Op[T]) -> T:
        """Drive a core operation to its result, one round trip per batch."""
        try:
            batch = next(op)
            while True:
                batch = op.send(self._execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _execute(self, batch: Batch) -> list[Any]:
        try:
            if single(batch):
                return [self._execute_one(batch.calls[0])]
            return self._execute_pipeline(batch)
        except RedisError as exc:
            raise storage_error(exc) from exc

    def _execute_one(self, call: Call) -> Any:
        try:
            return self._send(self.client, call)
        except NoScriptError:
            replies = self._resend_with_scripts(Batch((call,)))
            return raise_errors(replies)[0]

    def _execute_pipeline(self, batch: Batch) -> list[Any]:
        pipe = self.client.pipeline(transaction=batch.atomic)
        for call in batch.calls:
            self._send(pipe, call)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if scripts_lost(batch, replies):
            replies = self._resend_with_scripts(batch)
        return raise_errors(replies)

    def _resend_with_scripts(self, batch: Batch) -> list[Any]:
        """Send a batch again, each script loaded in one transaction with its call.

        Redis lost its scripts (restart, failover, SCRIPT FLUSH); loading them in a round
        trip of their own would leave room for another flush before the re-send.
        """
        pipe = self.client.pipeline(transaction=batch.atomic)
        where = self._queue_with_scripts(pipe, batch)
        return with_scripts_replies(where, pipe.execute(raise_on_error=False))

    # ------------------------------------------------------------------ IStorage

    def find_available_proxy(
        self,
        pool_name: str,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
    ) -> Optional[Proxy]:
        """Return the first available proxy of a pool in selector order matching filters."""
        return self.run(self.core.find_available_proxy(pool_name, filters, selector))

    def create_lease(self, proxy: Proxy, consumer_name: str, duration_seconds: int) -> Lease:
        """Lease a proxy atomically; raises ProxyUnavailableError when it is full."""
        return self.run(self.core.create_lease(proxy, consumer_name, duration_seconds))

    def ensure_consumer(self, consumer_name: str) -> UUID:
        """Return a consumer's id, creating it if needed (concurrent callers get one id)."""
        return self.run(self.core.ensure_consumer(consumer_name))

    def release_lease(self, lease: Lease) -> None:
        """Release a lease; idempotent."""
        self.run(self.core.release_lease(lease))

    def cleanup_expired_leases(self) -> int:
        """Reclaim expired leases of every pool and return how many."""
        return self.run(self.core.cleanup_expired_leases())

    def apply_health_check_result(self, result: HealthCheckResult) -> Optional[Proxy]:
        """Apply a health check to its proxy; None when the proxy is unknown."""
        return self.run(self.core.apply_health_check_result(result))

    def get_last_health_result(self, proxy_id: UUID) -> Optional[HealthCheckResult]:
        """Return the newest health result of a proxy, or None."""
        return self.run(self.core.last_health_result(proxy_id))

    def get_pool_stats(self, pool_name: str) -> Optional[PoolStatsSnapshot]:
        """Return a pool's counters in one round trip, or None for an unknown pool."""
        return self.run(self.core.get_pool_stats(pool_name))

    def add_proxies_bulk(self, proxies: Sequence[Proxy]) -> int:
        """Insert or update many proxies, pipelined; nothing is written if a pool is missing."""
        return self.run(self.core.save_proxies(list(proxies)))

    def save_pool(self, pool: ProxyPool) -> None:
        """Insert or update a pool."""
        self.run(self.core.save_pool(pool))

    def get_pool(self, pool_id: str) -> ProxyPool:
        """Return a pool by id."""
        return self.run(self.core.get_pool(pool_id))

    def list_pools(self) -> Sequence[ProxyPool]:
        """Return all pools."""
        return self.run(self.core.list_pools())

    def delete_pool(self, pool_id: str) -> None:
        """Delete a pool and everything in it."""
        self.run(self.core.delete_pool(pool_id))

    def save_proxy(self, proxy: Proxy) -> None:
        """Insert or update a proxy, keeping its lease count."""
        self.run(self.core.save_proxies([proxy]))

    def get_proxy(self, proxy_id: str) -> Proxy:
        """Return a proxy by id."""
        return self.run(self.core.require_proxy(proxy_id))

    def list_proxies(self, pool_id: str) -> Sequence[Proxy]:
        """Return all proxies of a pool."""
        return self.run(self.core.list_proxies(pool_id))

    def delete_proxy(self, proxy_id: str) -> None:
        """Delete a proxy."""
        self.run(self.core.delete_proxy(proxy_id))

    def get_lease(self, lease_id: str) -> Optional[Lease]:
        """Return a lease by id, or None."""
        return self.run(self.core.get_lease(lease_id))

    def list_leases(self, consumer_id: Optional[str] = None) -> Sequence[Lease]:
        """Return leases, optionally of one consumer."""
        return self.run(self.core.list_leases(consumer_id))

    def save_health_record(self, record: ProxyHealthRecord) -> None:
        """Store a health record."""
        self.run(self.core.save_health_record(record))

    def list_health_records(self, proxy_id: UUID, limit: int = 100) -> Sequence[ProxyHealthRecord]:
        """Return a proxy's most recent health records, newest first."""
        return self.run(self.core.health_records(proxy_id, limit))

    # ------------------------------------------------------------------ pharox helpers

    def add_pool(self, pool: ProxyPool) -> None:
        """Alias of ``save_pool`` for ``pharox.utils.bootstrap`` and ``benchmarks``."""
        self.save_pool(pool)

    def add_proxy(self, proxy: Proxy) -> None:
        """Alias of ``save_proxy`` for ``pharox.utils.bootstrap`` and ``benchmarks``."""
        self.save_proxy(proxy)

    def add_consumer(self, consumer: Consumer) -> None:
        """Register a consumer with its given id."""
        self.run(self.core.add_consumer(consumer.id, consumer.name))

    def get_proxy_by_id(self, proxy_id: UUID) -> Optional[Proxy]:
        """Return a proxy by id, or None."""
        return self.run(self.core.get_proxy(proxy_id))

    # ------------------------------------------------------------------ audit

    def audit(self, pool_name: Optional[str] = None, *, repair: bool = False) -> AuditReport:
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
        return self.run(audit(self.core, pool_name, repair))
