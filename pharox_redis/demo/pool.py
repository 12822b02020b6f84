"""The demo pool: its twelve proxies, their health checks, its counters line and final audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from pharox import (
    HealthCheckResult,
    PoolStatsSnapshot,
    Proxy,
    ProxyCredentials,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
)

from ..storage import RedisStorage

POOL_NAME = "demo"


def build_proxies(pool: ProxyPool) -> list[Proxy]:
    """Return twelve proxies of mixed countries, sources and limits for ``pool``.

    Parameters
    ----------
    pool:
        The pool they belong to.

    Returns
    -------
    list[Proxy]
        The proxies (documentation addresses from 203.0.113.0/24; nothing connects to them).

    """
    rows: list[tuple[str, str, Optional[int], ProxyStatus]] = [
        ("US", "datacenter", None, ProxyStatus.ACTIVE),
        ("US", "residential", 2, ProxyStatus.ACTIVE),
        ("US", "mobile", 1, ProxyStatus.ACTIVE),
        ("DE", "datacenter", None, ProxyStatus.ACTIVE),
        ("DE", "residential", 1, ProxyStatus.ACTIVE),
        ("FR", "datacenter", 2, ProxyStatus.ACTIVE),
        ("FR", "mobile", None, ProxyStatus.ACTIVE),
        ("JP", "residential", None, ProxyStatus.ACTIVE),
        ("JP", "mobile", 2, ProxyStatus.ACTIVE),
        ("BR", "datacenter", None, ProxyStatus.ACTIVE),
        ("BR", "residential", 1, ProxyStatus.INACTIVE),
        ("GB", "residential", None, ProxyStatus.ACTIVE),
    ]
    proxies = []
    for i, (country, source, limit, status) in enumerate(rows, start=1):
        credentials = ProxyCredentials(user="demo", password="s3cret") if i == 12 else None
        proxies.append(
            Proxy(
                host=f"203.0.113.{i}",
                port=8000 + i,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=status,
                country=country,
                source=source,
                max_concurrency=limit,
                credentials=credentials,
            )
        )
    return proxies


def stats_line(stats: Optional[PoolStatsSnapshot]) -> str:
    """Format pool counters on one line.

    Parameters
    ----------
    stats:
        A snapshot, or None for an unknown pool.

    Returns
    -------
    str
        The counters.

    """
    if stats is None:
        return "pool not found"
    return (
        f"proxies={stats.total_proxies} active={stats.active_proxies} "
        f"available={stats.available_proxies} leased={stats.leased_proxies} "
        f"leases={stats.total_leases}"
    )


def create_pool(storage: RedisStorage, say: Callable[[str], None]) -> None:
    """Save the demo pool and its proxies, then record health checks for three of them.

    The latencies give ``LOWEST_LATENCY`` an order: JP/residential fastest, DE next.

    Parameters
    ----------
    storage:
        An empty namespace to work in.
    say:
        Where output lines go.

    """
    pool = ProxyPool(name=POOL_NAME, description="pharox-redis demo pool")
    storage.save_pool(pool)
    proxies = build_proxies(pool)
    storage.add_proxies_bulk(proxies)
    say(f"pool {POOL_NAME!r}: {stats_line(storage.get_pool_stats(POOL_NAME))}")

    for proxy, latency in ((proxies[7], 35), (proxies[3], 60), (proxies[0], 240)):
        storage.apply_health_check_result(
            HealthCheckResult(
                proxy_id=proxy.id,
                status=ProxyStatus.ACTIVE,
                latency_ms=latency,
                protocol=proxy.protocol,
                status_code=200,
            )
        )
    say("health: 203.0.113.8 35 ms, 203.0.113.4 60 ms, 203.0.113.1 240 ms")


def check_pool(storage: RedisStorage, say: Callable[[str], None]) -> bool:
    """Print the pool's final counters and audit it (what ``pharox-redis verify`` does).

    Parameters
    ----------
    storage:
        The demo's storage.
    say:
        Where output lines go.

    Returns
    -------
    bool
        True when every lease came back (zero leases) and the audit found no drift.

    """
    final = storage.get_pool_stats(POOL_NAME)
    say(f"final: {stats_line(final)}")
    audit = storage.audit(POOL_NAME)
    say(
        f"audit (pharox-redis verify): {audit.proxies} proxies, {audit.active_leases} active "
        f"leases, {len(audit.drift)} drift"
    )
    idle = final is not None and final.leased_proxies == 0 and final.total_leases == 0
    return idle and audit.clean
