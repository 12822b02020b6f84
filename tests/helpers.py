"""Shared test helpers: seeding, recording round trips, recomputing counters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import RedisStorage
from pharox_redis.core import Batch

BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_pool(storage: RedisStorage, name: str = "pool") -> ProxyPool:
    pool = ProxyPool(name=name)
    storage.save_pool(pool)
    return pool


def make_proxy(pool: ProxyPool, n: int = 0, **fields: Any) -> Proxy:
    fields.setdefault("status", ProxyStatus.ACTIVE)
    fields.setdefault("checked_at", BASE_TIME + timedelta(seconds=n))
    return Proxy(
        host=f"10.0.{n // 250}.{n % 250 + 1}",
        port=8000 + n % 1000,
        protocol=ProxyProtocol.HTTP,
        pool_id=pool.id,
        **fields,
    )


class Recorder:
    """Record every batch a storage sends (one batch = one round trip)."""

    def __init__(self, storage: RedisStorage) -> None:
        self.batches: list[Batch] = []
        original = storage._execute

        def execute(batch: Batch) -> list[Any]:
            self.batches.append(batch)
            return original(batch)

        storage._execute = execute  # type: ignore[method-assign]

    def reset(self) -> None:
        self.batches.clear()

    @property
    def calls(self) -> list[Any]:
        return [call for batch in self.batches for call in batch.calls]


def recomputed_stats(storage: RedisStorage, pool: ProxyPool) -> dict[str, int]:
    """The pool counters recomputed from the proxies, like pharox's in-memory adapter."""
    proxies = storage.list_proxies(str(pool.id))

    def free(p: Proxy) -> bool:
        return p.status == ProxyStatus.ACTIVE and (
            p.max_concurrency is None or p.current_leases < p.max_concurrency
        )

    return {
        "total_proxies": len(proxies),
        "active_proxies": sum(p.status == ProxyStatus.ACTIVE for p in proxies),
        "available_proxies": sum(free(p) for p in proxies),
        "leased_proxies": sum(p.current_leases > 0 for p in proxies),
        "total_leases": sum(p.current_leases for p in proxies),
    }


def stored_stats(storage: RedisStorage, pool: ProxyPool) -> dict[str, int]:
    stats = storage.get_pool_stats(pool.name)
    assert stats is not None
    return {
        k: getattr(stats, k)
        for k in (
            "total_proxies",
            "active_proxies",
            "available_proxies",
            "leased_proxies",
            "total_leases",
        )
    }
