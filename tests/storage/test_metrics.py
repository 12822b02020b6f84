"""Prometheus metrics: pool gauges read from a real server on scrape, manager counters.

The exposition text is parsed back with prometheus_client's own parser, as Prometheus
would read it, from the registry in-process and from ``serve_metrics``' HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    Outcome,
    OutcomePolicy,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.metrics import ManagerMetrics, PoolCollector, serve_metrics

from ..conftest import BACKENDS
from ..helpers import Recorder, make_pool, make_proxy, seed_pool

REAL = [b for b in BACKENDS if b.id != "fakeredis"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parsed(text: str) -> Samples:
    """Every sample of an exposition text: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(params=REAL)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_pool_gauges_are_read_from_redis_on_each_scrape(
    make_storage: Callable[..., RedisStorage],
) -> None:
    storage = make_storage(outcomes=OutcomePolicy(base_seconds=300))  # outlasts the test
    busy = seed_pool(storage, 3, name="busy", max_concurrency=1)
    idle = make_pool(storage, "idle")
    storage.add_proxies_bulk([make_proxy(idle, 9, status="inactive")])
    registry = CollectorRegistry()
    registry.register(PoolCollector(storage))
    recorder = Recorder(storage)
    assert len(recorder.batches) == 0, "registering reads nothing"
    manager = RedisProxyManager(storage)
    held = [manager.acquire("busy"), manager.acquire("busy")]
    recorder.reset()
    samples = parsed(generate_latest(registry).decode())
    assert len(recorder.batches) == 2, "the registry, then every pool's counters at once"
    assert value(samples, "pharox_pool_proxies", pool="busy", state="active") == 3
    assert value(samples, "pharox_pool_proxies", pool="busy", state="not_active") == 0
    assert value(samples, "pharox_pool_proxies_available", pool="busy") == 1
    assert value(samples, "pharox_pool_proxies_leased", pool="busy") == 2
    assert value(samples, "pharox_pool_leases_active", pool="busy") == 2
    assert value(samples, "pharox_pool_proxies", pool="idle", state="not_active") == 1
    assert value(samples, "pharox_pool_proxies_available", pool="idle") == 0
    assert value(samples, "pharox_pool_proxies_cooling", pool="busy") == 0
    assert value(samples, "pharox_pool_blocks", pool="busy") == 0
    first, second = held
    assert first is not None and second is not None
    manager.release_proxy(first.lease, outcome=Outcome.failed())  # a cool-down
    manager.release_proxy(second.lease, outcome=Outcome.blocked("example.com"))
    recorder.reset()
    again = parsed(generate_latest(registry).decode())
    assert len(recorder.batches) == 2, "cool-downs and blocks come with the counters"
    assert value(again, "pharox_pool_leases_active", pool="busy") == 0
    assert value(again, "pharox_pool_proxies_available", pool="busy") == 2  # one cooling
    assert value(again, "pharox_pool_proxies_cooling", pool="busy") == 1
    assert value(again, "pharox_pool_blocks", pool="busy") == 1
    assert value(again, "pharox_pool_proxies_cooling", pool="idle") == 0
    assert busy.name == "busy"


def test_managers_count_acquires_misses_latency_renewals_and_losses(
    storage: RedisStorage,
) -> None:
    seed_pool(storage, 1, name="one", max_concurrency=1)
    registry = CollectorRegistry()
    metrics = ManagerMetrics(registry)
    manager = RedisProxyManager(storage)
    metrics.instrument(manager)
    metrics.instrument(manager)  # idempotent
    short = manager.acquire("one", duration_seconds=0.2)
    assert short is not None
    assert manager.acquire("one") is None  # all busy
    assert manager.acquire("nosuch") is None
    assert manager.acquire("one", wait=0.05) is None  # a wait is one acquire too
    manager.renew_lease(short, 0.2)
    time.sleep(0.3)
    manager.release_proxy(short)  # past its deadline: lost
    samples = parsed(generate_latest(registry).decode())
    assert value(samples, "pharox_acquires_total", pool="one", outcome="leased") == 1
    assert value(samples, "pharox_acquires_total", pool="one", outcome="missed") == 2
    assert value(samples, "pharox_acquire_misses_total", pool="one", reason="all-busy") == 2
    assert value(samples, "pharox_acquire_misses_total", pool="nosuch", reason="unknown-pool") == 1
    assert value(samples, "pharox_acquire_seconds_count", pool="one") == 3
    assert value(samples, "pharox_acquire_seconds_bucket", pool="one", le="+Inf") == 3
    assert value(samples, "pharox_lease_renewals_total", pool="one") == 1
    assert value(samples, "pharox_leases_lost_total", pool="one") == 1


def test_the_async_manager_is_counted_too(
    make_async_storage: Callable[..., AsyncRedisStorage],
    storage: RedisStorage,
    loop: asyncio.AbstractEventLoop,
) -> None:
    seed_pool(storage, 1, name="one")
    registry = CollectorRegistry()
    manager = AsyncRedisProxyManager(make_async_storage())
    ManagerMetrics(registry).instrument(manager)

    async def work() -> None:
        leased = await manager.acquire("one")
        assert leased is not None
        await manager.renew_lease(leased, 30)
        await manager.release_proxy(leased)

    loop.run_until_complete(work())
    samples = parsed(generate_latest(registry).decode())
    assert value(samples, "pharox_acquires_total", pool="one", outcome="leased") == 1
    assert value(samples, "pharox_lease_renewals_total", pool="one") == 1


def test_serve_metrics_answers_a_scrape(storage: RedisStorage) -> None:
    seed_pool(storage, 2, name="served")
    server, thread = serve_metrics(0, storage)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            samples = parsed(reply.read().decode())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert value(samples, "pharox_pool_proxies", pool="served", state="active") == 2
    assert value(samples, "pharox_pool_leases_active", pool="served") == 0
