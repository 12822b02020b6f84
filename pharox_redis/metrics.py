"""Prometheus metrics: pool gauges read from Redis on scrape, and what managers count.

Needs ``prometheus_client`` (``pip install "pharox-redis[metrics]"``); this module imports it
when it is imported, and nothing else in the package imports this module.

* :class:`PoolCollector`: per-pool gauges read from Redis each time the registry is scraped
  (two round trips for every pool at once, see ``RedisStorage.list_outcome_stats``), so every
  process of a fleet, or one exporter, reports the same numbers.
* :class:`ManagerMetrics`: counters and a histogram fed by the managers of this process
  (their observers, ``manager.policy.observers``): acquires by outcome, misses by reason,
  acquire latency, renewals and lost leases.
* :func:`serve_metrics`: both on an HTTP endpoint (``pharox-redis metrics --port``).

Metric names (all labelled with ``pool``):

=================================== ========= ==================================================
``pharox_pool_proxies``             gauge     proxies, by ``state``: ``active`` or ``not_active``
``pharox_pool_proxies_available``   gauge     ACTIVE proxies below their max concurrency
``pharox_pool_proxies_leased``      gauge     proxies holding at least one lease
``pharox_pool_leases_active``       gauge     active leases
``pharox_pool_proxies_cooling``     gauge     proxies in a cool-down after failures (outcomes)
``pharox_pool_blocks``              gauge     blocks in force for a target, one per domain+proxy
``pharox_acquires_total``           counter   acquires of this process, by ``outcome``
                                              (``leased`` or ``missed``)
``pharox_acquire_misses_total``     counter   acquires that returned None, by ``reason``
                                              (see :class:`~pharox_redis.misses.MissReason`)
``pharox_acquire_seconds``          histogram time an acquire took, retries included
``pharox_lease_renewals_total``     counter   renewals (``renew_lease`` and keep-alives)
``pharox_leases_lost_total``        counter   leases whose deadline passed before renewal or
                                              release
=================================== ========= ==================================================
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Union

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .async_manager import AsyncRedisProxyManager
from .manager import RedisProxyManager
from .misses import AcquireMiss
from .storage import RedisStorage

# Acquire latency buckets (seconds): one round trip is ~0.1-1 ms on a LAN.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PoolCollector(Collector):
    """Per-pool gauges, read from Redis on each scrape.

    Parameters
    ----------
    storage:
        A sync storage (an asyncio program passes ``RedisStorage.from_url`` of the same
        URL: a scrape runs in the HTTP server's thread).

    """

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage

    def collect(self) -> Iterator[Metric]:
        """Read every pool's counters and yield them as gauge families."""
        proxies = GaugeMetricFamily(
            "pharox_pool_proxies", "Proxies in the pool, by state.", labels=["pool", "state"]
        )
        available = GaugeMetricFamily(
            "pharox_pool_proxies_available",
            "ACTIVE proxies below their max concurrency.",
            labels=["pool"],
        )
        leased = GaugeMetricFamily(
            "pharox_pool_proxies_leased", "Proxies holding at least one lease.", labels=["pool"]
        )
        leases = GaugeMetricFamily(
            "pharox_pool_leases_active", "Active leases in the pool.", labels=["pool"]
        )
        cooling = GaugeMetricFamily(
            "pharox_pool_proxies_cooling",
            "Proxies in a cool-down after failures (Outcome.failed()).",
            labels=["pool"],
        )
        blocks = GaugeMetricFamily(
            "pharox_pool_blocks",
            "Blocks in force for a target domain, one per domain and proxy (Outcome.blocked()).",
            labels=["pool"],
        )
        for found in self.storage.list_outcome_stats():
            stats, name = found.stats, found.stats.pool_name
            proxies.add_metric([name, "active"], stats.active_proxies)
            proxies.add_metric([name, "not_active"], stats.total_proxies - stats.active_proxies)
            available.add_metric([name], stats.available_proxies)
            leased.add_metric([name], stats.leased_proxies)
            leases.add_metric([name], stats.total_leases)
            cooling.add_metric([name], found.cooling)
            blocks.add_metric([name], found.blocked)
        yield from (proxies, available, leased, leases, cooling, blocks)

    def describe(self) -> Iterator[Metric]:
        """Describe nothing: registering the collector must not read Redis."""
        return iter(())


class ManagerMetrics:
    """Counters and a latency histogram fed by managers (their observer hook).

    Parameters
    ----------
    registry:
        Where the metrics are registered (default: prometheus_client's global registry).

    Examples
    --------
    >>> metrics = ManagerMetrics()  # doctest: +SKIP
    >>> metrics.instrument(manager)  # doctest: +SKIP

    """

    def __init__(self, registry: Optional[CollectorRegistry] = REGISTRY) -> None:
        self.acquires = Counter(
            "pharox_acquires",
            "Acquires by outcome (leased or missed).",
            ["pool", "outcome"],
            registry=registry,
        )
        self.misses = Counter(
            "pharox_acquire_misses",
            "Acquires that returned None, by reason.",
            ["pool", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "pharox_acquire_seconds",
            "Time an acquire took (retries of lost replies included).",
            ["pool"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.renewals = Counter(
            "pharox_lease_renewals", "Lease renewals.", ["pool"], registry=registry
        )
        self.losses = Counter(
            "pharox_leases_lost",
            "Leases whose deadline passed before they were renewed or released.",
            ["pool"],
            registry=registry,
        )

    def instrument(self, manager: Union[RedisProxyManager, AsyncRedisProxyManager]) -> None:
        """Count what ``manager`` does from now on (idempotent)."""
        if self not in manager.policy.observers:
            manager.policy.observers.append(self)

    # The observer protocol (flows.Observer).

    def acquired(self, pool_name: str, miss: Optional[AcquireMiss], seconds: float) -> None:
        """Count an acquire and its latency (and its miss reason)."""
        self.acquires.labels(pool_name, "missed" if miss else "leased").inc()
        self.latency.labels(pool_name).observe(seconds)
        if miss is not None:
            self.misses.labels(pool_name, miss.reason.value).inc()

    def renewed(self, pool_name: str) -> None:
        """Count a renewal."""
        self.renewals.labels(pool_name).inc()

    def lost(self, pool_name: str) -> None:
        """Count a lost lease."""
        self.losses.labels(pool_name).inc()


def serve_metrics(
    port: int,
    storage: RedisStorage,
    *,
    addr: str = "127.0.0.1",
    registry: Optional[CollectorRegistry] = None,
) -> tuple[Any, Any]:
    """Serve the pool gauges (and whatever else ``registry`` holds) on ``http://addr:port/``.

    Parameters
    ----------
    port:
        TCP port to listen on (0: any free port; read it from the returned server's
        ``server_port``).
    storage:
        The storage whose pools are reported.
    addr:
        Address to listen on: loopback by default; ``0.0.0.0`` for a Prometheus on
        another host.
    registry:
        The registry to serve; by default a new one holding the pool collector only.

    Returns
    -------
    tuple
        prometheus_client's ``(server, thread)``: the server runs in a daemon thread;
        ``server.shutdown()`` then ``server.server_close()`` stop it.

    """
    if registry is None:
        registry = CollectorRegistry()
    registry.register(PoolCollector(storage))
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return server, thread
