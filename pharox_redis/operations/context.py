"""What every operation of one storage shares: its key schema, settings and caches."""

from __future__ import annotations

from uuid import UUID

from ..keys import KeySchema
from ..outcome import DEFAULT_POLICY, OutcomePolicy
from .validation import check_settings

_PROXY_CACHE_LIMIT = 100_000


class Context:
    """The settings of one storage and what its operations have learnt.

    The caches only save round trips: every script checks what a cached id stands for (a
    pool's name, a proxy's pool) and answers ``stale`` or ``missing`` when it changed, and
    the operation then resolves it again.

    Parameters
    ----------
    keys:
        The key schema (prefix) to use.
    lease_retention_seconds:
        How long released and reclaimed lease records are kept.
    health_history:
        Most health records kept per proxy.
    wait_replicas:
        Replicas that must acknowledge a new lease (``WAIT``) before it is handed out.
    wait_timeout:
        Seconds ``WAIT`` may block for them.
    outcomes:
        How pools react to the outcomes reported with releases (cool-downs, latency).

    """

    def __init__(
        self,
        keys: KeySchema,
        lease_retention_seconds: float,
        health_history: int,
        wait_replicas: int = 0,
        wait_timeout: float = 0.05,
        outcomes: OutcomePolicy = DEFAULT_POLICY,
    ) -> None:
        if not isinstance(outcomes, OutcomePolicy):
            raise ValueError(f"outcomes must be an OutcomePolicy, got {type(outcomes).__name__}")
        check_settings(lease_retention_seconds, health_history, wait_replicas, wait_timeout)
        self.keys = keys
        self.retention_us = round(lease_retention_seconds * 1_000_000)
        self.health_history = health_history
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, round(wait_timeout * 1000))
        self.outcomes = outcomes
        self.pool_ids: dict[str, UUID] = {}  # pool name -> id
        self.consumers: dict[str, UUID] = {}  # consumer name -> id
        self.proxy_pools: dict[UUID, UUID] = {}  # proxy id -> pool id
        # Pools whose cleanup entry covered this process's last acquire: the next one is
        # sent without schedule.lua (acquire.lua refuses it, changing nothing, if wrong).
        self.covered: set[UUID] = set()

    def remember(self, proxy_id: UUID, pool_id: UUID) -> None:
        """Cache which pool holds a proxy (bounded)."""
        if len(self.proxy_pools) >= _PROXY_CACHE_LIMIT:
            self.proxy_pools.clear()
        self.proxy_pools[proxy_id] = pool_id

    def name_pool(self, name: str, pool_id: UUID) -> None:
        """Cache a pool's name, forgetting any other name it had."""
        self.forget_pool(pool_id, proxies=False)
        self.pool_ids[name] = pool_id

    def forget_pool(self, pool_id: UUID, proxies: bool = True) -> None:
        """Drop what is cached about a pool (its names, and its proxies' pool)."""
        for name in [n for n, i in self.pool_ids.items() if i == pool_id]:
            del self.pool_ids[name]
        if proxies:
            for proxy in [p for p, i in self.proxy_pools.items() if i == pool_id]:
                del self.proxy_pools[proxy]
