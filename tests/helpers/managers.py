"""Helpers of the manager tests: one body for the sync and the async manager.

The async manager runs behind :class:`AsyncManager`, a facade that runs its coroutines on the
test's loop and turns its async context managers into sync ones, so a test body reads the
same for both. Pools are seeded through the manager's own storage; pharox's
``InMemoryStorage`` with its stock ``ProxyManager`` is the reference semantics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Optional
from uuid import uuid4

from pharox import (
    HealthCheckResult,
    InMemoryStorage,
    PoolStatsSnapshot,
    Proxy,
    ProxyManager,
    ProxyPool,
)

from pharox_redis import AsyncRedisProxyManager
from pharox_redis.operations.batch import Op

from . import AsyncFacade, make_pool, make_proxy

STATS_FIELDS = (
    "total_proxies",
    "active_proxies",
    "available_proxies",
    "leased_proxies",
    "total_leases",
)


class AsyncManager(AsyncFacade):
    """An AsyncRedisProxyManager driven from sync code; ``storage`` is driven the same way."""

    def __init__(self, manager: AsyncRedisProxyManager, loop: asyncio.AbstractEventLoop):
        super().__init__(manager, loop)
        self.storage = AsyncFacade(manager.storage, loop)


def is_async(manager: Any) -> bool:
    return isinstance(manager, AsyncManager)


def counters(stats: Optional[PoolStatsSnapshot]) -> dict[str, int]:
    assert stats is not None
    return {k: getattr(stats, k) for k in STATS_FIELDS}


def seed(manager: Any, proxies_per_pool: int = 1, **fields: Any) -> tuple[ProxyPool, list[Proxy]]:
    """Seed a pool through the manager's own storage."""
    pool = make_pool(manager.storage, f"pool-{uuid4().hex[:6]}")
    proxies = [make_proxy(pool, n, **fields) for n in range(proxies_per_pool)]
    assert manager.storage.add_proxies_bulk(proxies) == len(proxies)
    return pool, proxies


def count(manager: Any, proxy: Proxy) -> int:
    """The proxy's ``current_leases`` as stored."""
    return int(manager.storage.get_proxy(str(proxy.id)).current_leases)


def recording_sleep(manager: Any, sleeps: list[float]) -> Any:
    """A sleep_fn recording its waits: a coroutine function for the async manager."""
    if is_async(manager):

        async def record(seconds: float) -> None:
            sleeps.append(seconds)

        return record
    return sleeps.append


def run_op(manager: Any, op: Op[Any]) -> Any:
    """Run a sans-I/O operation on the manager's storage executor (sync or async)."""
    if is_async(manager):
        return manager.storage.drive(manager.storage.target.executor.run(op))
    return manager.storage.executor.run(op)


def reference(
    pool: ProxyPool, proxies: Sequence[Proxy], health: Sequence[HealthCheckResult] = ()
) -> ProxyManager:
    """pharox's stock manager on ``InMemoryStorage`` holding the same pool."""
    storage = InMemoryStorage()
    storage.add_pool(pool)
    for proxy in proxies:
        storage.add_proxy(proxy)
    for result in health:
        storage.apply_health_check_result(result)
    return ProxyManager(storage)
