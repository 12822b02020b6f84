"""Redis Cluster: every script call, and every atomic batch, stays in one hash slot.

Every key a script touches arrives through KEYS under the pool's hash tag (or
``{<prefix>:global}``), so a pool's scripts run on one node; checked with
``redis.crc.key_slot`` over every batch that the whole API sends, recorded through
``storage.executor.observers``.
"""

from __future__ import annotations

import time

from pharox import (
    HealthCheckResult,
    ProxyFilters,
    ProxyManager,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)
from redis.crc import key_slot

from pharox_redis import Outcome, RedisProxyManager, RedisStorage
from pharox_redis.operations.batch import Command, ScriptCall

from ..helpers import Recorder, make_pool, make_proxy


def test_every_script_call_stays_in_one_cluster_slot(storage: RedisStorage) -> None:
    recorder = Recorder(storage)
    pool = make_pool(storage)
    proxies = [make_proxy(pool, n, max_concurrency=1, country="AR") for n in range(6)]
    storage.add_proxies_bulk(proxies)
    manager = ProxyManager(storage)
    leases = [
        manager.acquire_proxy(
            pool.name,
            selector=selector,
            duration_seconds=0.05,  # type: ignore[arg-type]  # pharox types it int
            filters=ProxyFilters(country="AR", predicate=lambda p: True),
        )
        for selector in SelectorStrategy
    ]
    assert all(lease is not None for lease in leases)
    last = leases[-1]
    assert last is not None
    manager.release_proxy(last)
    fast = RedisProxyManager(storage)
    leased = fast.acquire(pool.name, filters=ProxyFilters(country="AR"))
    assert leased is not None
    fast.renew_lease(leased, 0.05)
    assert fast.acquire(pool.name, filters=ProxyFilters(predicate=lambda p: True)) is not None
    rotated = fast.rotate(leased, duration_seconds=0.05)
    assert rotated is not None
    several = fast.acquire_many(pool.name, 2, duration_seconds=0.05)
    for got in several:
        got.report(Outcome.ok(3))
    fast.release_many([rotated, *several])
    targeted = fast.acquire(pool.name, duration_seconds=0.05, target="a.example")
    assert targeted is not None
    targeted = fast.rotate(targeted, outcome=Outcome.blocked("a.example"), target="a.example")
    assert targeted is not None
    fast.release_proxy(targeted, outcome=Outcome.failed())
    assert storage.get_outcome_stats(pool.name) is not None
    time.sleep(0.1)
    manager.cleanup_expired_leases()
    storage.apply_health_check_result(
        HealthCheckResult(
            proxy_id=proxies[0].id,
            status=ProxyStatus.ACTIVE,
            latency_ms=3,
            protocol=ProxyProtocol.HTTP,
        )
    )
    storage.delete_proxy(str(proxies[1].id))
    storage.delete_pool(str(pool.id))
    names = set()
    for batch in recorder.batches:
        for call in batch.calls:
            if isinstance(call, ScriptCall):
                names.add(call.name)
                assert len({key_slot(k.encode()) for k in call.keys}) == 1, call
        if batch.atomic:
            keys = [c.args[1] for c in batch.calls if isinstance(c, Command)]
            assert len({key_slot(k.encode()) for k in keys}) == 1
    assert names == {
        "acquire",
        "renew",
        "register_pool",
        "save_proxies",
        "find",
        "lease",
        "schedule",
        "release",
        "due",
        "reclaim",
        "health",
        "delete_proxy",
        "unregister_pool",
        "stats",
        "rotate",
        "acquire_many",
        "release_many",
    }
