"""A least-privilege ACL user: the rule the README documents, and what it needs.

``ACL_RULE`` (``tests/helpers/acl.py``) lists exactly the commands the adapter needs: the ones
it sends (EVALSHA, SCRIPT LOAD after NOSCRIPT, MULTI/EXEC, the plain reads and writes, the
PING of redis-py's health check) and the ones its Lua scripts run, since Redis 7 checks a
script's ``redis.call`` against the ACL of the user who runs it. HELLO and AUTH are always
allowed, so the rule does not list them.

This module runs the whole API as a user with that rule, and checks on the server (``INFO
commandstats``, ``ACL LOG``) that every command in the rule was used and nothing refused.
Users whose rule refuses Functions (the rule for Redis 6.2, or one without ``FUNCTION LOAD``)
run it too: each storage is refused once, falls back to ``EVALSHA`` and goes on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from pharox import (
    Consumer,
    HealthCheckResult,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyManager,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    NotReplicatedError,
    Outcome,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.codec import text
from pharox_redis.scripts import library

from ..helpers import make_proxy
from ..helpers.acl import (
    ACL_RULE,
    ALWAYS_ALLOWED,
    EVALSHA_RULE,
    FUNCTION_WORDS,
    PASSWORD,
    SCRIPT_WORDS,
    AclServer,
    acl_log,
    command_counts,
    rule_commands,
    setinfo_rule,
)

pytestmark = pytest.mark.real_redis


def sync_flow(url: str, admin: redis.Redis, flush: str = "function") -> None:
    """Every storage and manager operation, as the restricted user; checks the results."""
    # health_check_interval: redis-py PINGs a connection idle longer than this before using
    # it (off by default with from_url); a tiny one makes the PING happen in this short test.
    storage = RedisStorage.from_url(url, health_check_interval=0.001, lease_retention_seconds=60)
    try:
        pool = ProxyPool(name="acl")
        storage.save_pool(pool)
        storage.save_pool(ProxyPool(id=pool.id, name="acl", description="least privilege"))
        other = ProxyPool(name="acl-other")
        storage.add_pool(other)
        proxies = [make_proxy(pool, n, max_concurrency=2, country="AR") for n in range(4)]
        assert storage.add_proxies_bulk(proxies) == 4
        storage.save_proxy(make_proxy(other, 10))
        storage.add_consumer(Consumer(name="audit-consumer"))
        assert {p.name for p in storage.list_pools()} == {"acl", "acl-other"}
        assert storage.get_pool(str(pool.id)).description == "least privilege"
        assert len(storage.list_proxies(str(pool.id))) == 4
        assert storage.get_proxy(str(proxies[0].id)).host == proxies[0].host

        # health: status, latency history (trimmed), the latest result
        now = datetime.now(timezone.utc)
        for n, proxy in enumerate(proxies):
            storage.apply_health_check_result(
                HealthCheckResult(
                    proxy_id=proxy.id,
                    status=ProxyStatus.ACTIVE,
                    latency_ms=50 - n,
                    protocol=ProxyProtocol.HTTP,
                    checked_at=now,
                )
            )
        storage.save_health_record(
            ProxyHealthRecord(
                proxy_id=proxies[0].id,
                checked_at=now - timedelta(seconds=1),
                reachable=True,
                latency_ms=60,
                protocol=ProxyProtocol.HTTP,
                status_after=ProxyStatus.ACTIVE,
            )
        )
        assert len(storage.list_health_records(proxies[0].id)) == 2
        last = storage.get_last_health_result(proxies[0].id)
        assert last is not None and last.latency_ms == 50

        # RedisProxyManager: every selector, filters in Lua and in Python, renew, release
        manager = RedisProxyManager(storage)
        held = []
        # ROUND_ROBIN twice: the second one starts after the cursor the first one stored
        for selector in (*SelectorStrategy, SelectorStrategy.ROUND_ROBIN):
            leased = manager.acquire("acl", "worker", 30, ProxyFilters(country="AR"), selector)
            assert leased is not None, selector
            held.append(leased)
        free = next(p for p in storage.list_proxies(str(pool.id)) if p.current_leases < 2)
        picky = ProxyFilters(predicate=lambda p: p.id == free.id)  # decided in Python
        predicate_lease = manager.acquire_proxy("acl", "worker", 30, filters=picky)
        assert predicate_lease is not None and predicate_lease.proxy_id == free.id
        manager.renew_lease(held[0], 60)
        rotated = manager.rotate(held.pop(), "worker", 30)  # rotate, batch leasing
        assert rotated is not None
        batch = manager.acquire_many("acl", 2, "worker", 30, distinct=False)
        assert batch
        manager.release_many([rotated, *batch])
        # outcomes: a block, a failure and a latency; an acquire for the blocked target
        outcomes = [Outcome.blocked("a.example"), Outcome.failed(), Outcome.ok(12.5)]
        cooled = held[1].proxy.id  # the failure's proxy (which one depends on the ids)
        spare = next(proxy for proxy in proxies if proxy.id != cooled)
        for leased in held:
            manager.release_proxy(leased, outcome=outcomes.pop() if outcomes else None)
        manager.release_proxy(predicate_lease)
        targeted = manager.acquire("acl", "worker", 30, target="a.example")
        assert targeted is not None
        manager.release_proxy(targeted)
        found = storage.get_outcome_stats("acl")
        assert found is not None and (found.cooling, found.blocked) == (1, 1)
        with manager.with_proxy("acl", "worker", 3, keep_alive=True) as kept:
            assert kept is not None
        assert storage.get_pool_stats("acl") is not None

        # acquire(wait=): SUBSCRIBE, then the release's hand-off (PUBSUB NUMSUB, PUBLISH)
        full = manager.acquire_many("acl", 8, "worker", 30, distinct=False)
        assert len(full) == 6  # every usable slot is taken (one proxy of 4 is cooling down)
        timer = threading.Timer(0.2, lambda: manager.release_proxy(full[0]))
        timer.start()
        waited = RedisProxyManager(storage).acquire("acl", "waiter", 30, wait=10)
        timer.join()
        assert waited is not None and waited.proxy.id == full[0].proxy.id
        manager.release_many([*full[1:], waited])

        # pharox's stock ProxyManager on the same storage
        stock = ProxyManager(storage)
        lease = stock.acquire_proxy("acl", "stock", selector=SelectorStrategy.ROUND_ROBIN)
        assert lease is not None
        assert storage.get_lease(str(lease.id)) is not None
        assert storage.list_leases()
        stock.release_proxy(lease)

        # expiry: reclaimed by cleanup, and by the next acquire of the pool (sub-second
        # leases: pharox types durations as int, the adapter takes fractions)
        storage.create_lease(spare, "short", 0.05)  # type: ignore[arg-type]  # a fraction
        manager.acquire_proxy("acl-other", "short", 0.05)
        time.sleep(0.1)
        assert manager.cleanup_expired_leases() >= 1
        storage.create_lease(spare, "short", 0.05)  # type: ignore[arg-type]  # a fraction
        time.sleep(0.1)
        assert manager.acquire("acl", "worker") is not None

        # wait_replicas: WAIT after each lease; no replica here, so the lease is given back
        replicated = RedisStorage.from_url(url, wait_replicas=1, wait_timeout=0.01)
        try:
            with pytest.raises(NotReplicatedError):
                RedisProxyManager(replicated).acquire("acl", "worker")
        finally:
            replicated.client.close()

        # audit, then the library (scripts) lost (restart, failover, FUNCTION FLUSH, SCRIPT
        # FLUSH): FUNCTION LOAD (SCRIPT LOAD) again
        assert storage.audit().clean
        assert storage.audit("acl", repair=True).clean
        admin.function_flush() if flush == "function" else admin.script_flush()
        assert manager.acquire("acl", "worker") is not None

        storage.delete_proxy(str(proxies[2].id))
        storage.delete_pool(str(other.id))
        storage.delete_pool(str(pool.id))
        assert storage.list_pools() == []
    finally:
        storage.client.close()


async def async_flow(url: str) -> None:
    """The asyncio storage and manager, as the restricted user."""
    storage = AsyncRedisStorage.from_url(url, prefix="pharox:async")
    try:
        pool = ProxyPool(name="acl-async")
        await storage.save_pool(pool)
        await storage.add_proxies_bulk([make_proxy(pool, n) for n in range(3)])
        manager = AsyncRedisProxyManager(storage)
        async with manager.with_proxy("acl-async", "worker", 3, keep_alive=True) as leased:
            assert leased is not None
            await manager.renew_lease(leased, 10)
        lease = await manager.acquire_proxy("acl-async", "worker", 0.05)
        assert lease is not None
        await asyncio.sleep(0.1)
        assert await manager.cleanup_expired_leases() == 1
        assert len(await storage.list_proxies(str(pool.id))) == 3
        await storage.delete_pool(str(pool.id))
    finally:
        await storage.aclose()


def test_whole_api_runs_as_least_privilege_user(acl_server: AclServer, admin: redis.Redis) -> None:
    sync_flow(acl_server.url, admin)
    asyncio.run(async_flow(acl_server.url))

    # The admin client's own housekeeping (Valkey's redis-py handshake adds a CONFIG GET).
    used = set(command_counts(admin)) - {"config|resetstat", "function|flush", "config|get"}
    assert acl_log(admin) == []  # nothing was refused, not even an error redis-py swallows
    assert used - ALWAYS_ALLOWED == rule_commands(acl_server.rule)  # each one is needed
    assert all(text(key).startswith("pharox:") for key in admin.keys("*"))


def add_user(admin: redis.Redis, acl_server: AclServer, name: str, rule: str) -> str:
    """Create another restricted user; return its URL."""
    setuser = ("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", *rule.split())
    admin.execute_command(*setuser)  # type: ignore[no-untyped-call]
    return f"redis://{name}:{PASSWORD}@127.0.0.1:{acl_server.server.port}/0"


def refused_commands(admin: redis.Redis) -> set[str]:
    return {text(entry["object"]) for entry in acl_log(admin)}


def test_a_user_refused_functions_falls_back_to_evalsha(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    """The rule for Redis 6.2 (EVALSHA and SCRIPT LOAD) on a server that has Functions.

    Each storage's first FCALL is refused; from then on it calls EVALSHA, so the only
    refusals are of FCALL, and the rest of the flow needs nothing the rule lacks.
    """
    rule = EVALSHA_RULE + setinfo_rule()
    url = add_user(admin, acl_server, "pharox-evalsha", rule)
    try:
        admin.function_flush()
        sync_flow(url, admin, flush="script")
        asyncio.run(async_flow(url))
        counts = command_counts(admin)
        assert refused_commands(admin) == {"fcall"}
        admin_own = {
            "config|resetstat",
            "script|flush",
            "function|flush",
            "config|get",
            "acl|setuser",
        }
        used = set(counts) - admin_own
        assert used - ALWAYS_ALLOWED - {"fcall"} == rule_commands(rule)
        assert library().name not in {text(x[1]) for x in admin.function_list()}
    finally:
        admin.acl_deluser("pharox-evalsha")


def test_a_user_refused_function_load_falls_back_when_the_library_is_missing(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    """FCALL allowed, FUNCTION LOAD not: the library an admin loaded is used; when it is
    missing, loading it is refused and the storage falls back to EVALSHA."""
    rule = ACL_RULE.replace(FUNCTION_WORDS, f"+fcall {SCRIPT_WORDS}") + setinfo_rule()
    url = add_user(admin, acl_server, "pharox-no-load", rule)
    storage = RedisStorage.from_url(url, prefix="pharox:noload")
    try:
        admin.function_load(library().source.text, replace=True)
        pool = ProxyPool(name="no-load")
        storage.save_pool(pool)
        storage.save_proxy(make_proxy(pool))
        manager = RedisProxyManager(storage)
        with manager.with_proxy("no-load", "w", 30) as leased:
            assert leased is not None
        assert storage.executor.library is not None and acl_log(admin) == []

        admin.function_flush()
        with manager.with_proxy("no-load", "w", 30) as leased:
            assert leased is not None
        assert storage.executor.library is None
        assert refused_commands(admin) == {"function|load"}
        assert storage.audit().clean
        storage.delete_pool(str(pool.id))
    finally:
        storage.client.close()
        admin.acl_deluser("pharox-no-load")
