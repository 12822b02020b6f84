"""The audit finds every kind of drift, repairs it, and leaves a pool that works.

Each case starts from a consistent pool with active, released and expired leases (the audit
is clean), damages one derived structure by hand, and checks that ``audit()`` reports
exactly that damage, that ``audit(repair=True)`` fixes it, that a second audit is clean and
that the counters match the proxies again. The command line (``pharox-redis verify``) is
checked on the real server: exit codes, text and JSON output, ``--repair``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Union

import pytest
from pharox import Lease, ProxyPool, SelectorStrategy

from pharox_redis import AsyncRedisStorage, AuditReport, RedisProxyManager, RedisStorage
from pharox_redis.cli import main as cli_main
from pharox_redis.operations import cleanup, pools
from pharox_redis.server import RedisServer

from ..helpers import make_pool, make_proxy, recomputed_stats, stored_stats


class Scene:
    """A pool of six proxies (max_concurrency 2) with two active and one released lease.

    Every selector has been asked for once, so the pool keeps all four availability sets.
    """

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        self.client = storage.client
        self.pool: ProxyPool = make_pool(storage, "audited")
        self.proxies = [make_proxy(self.pool, n, max_concurrency=2) for n in range(6)]
        storage.add_proxies_bulk(self.proxies)
        for selector in (SelectorStrategy.ROUND_ROBIN, SelectorStrategy.LOWEST_LATENCY):
            assert storage.find_available_proxy("audited", selector=selector) is not None
        manager = RedisProxyManager(storage)
        self.active: list[Lease] = []
        for selector in (SelectorStrategy.FIRST_AVAILABLE, SelectorStrategy.FIRST_AVAILABLE):
            lease = manager.acquire_proxy("audited", duration_seconds=600, selector=selector)
            assert lease is not None
            self.active.append(lease)
        released = manager.acquire_proxy(
            "audited", duration_seconds=600, selector=SelectorStrategy.LEAST_USED
        )
        assert released is not None
        manager.release_proxy(released)
        self.released = released
        self.keys = storage.context.keys.pool(self.pool.id)
        self.globals = storage.context.keys.globals

    @property
    def held(self) -> str:
        return str(self.active[0].proxy_id)

    @property
    def free(self) -> str:
        leased = {str(lease.proxy_id) for lease in self.active}
        return next(str(p.id) for p in self.proxies if str(p.id) not in leased)


def damage_count(s: Scene) -> str:
    s.client.hset(s.keys.counts, s.held, 7)
    return "count"


def damage_count_of_free_proxy(s: Scene) -> list[str]:
    s.client.hset(s.keys.counts, s.free, 1)
    return ["count", "available:least"]  # the least-used score follows the stored count


def damage_count_of_unknown_proxy(s: Scene) -> str:
    s.client.hset(s.keys.counts, str(uuid.uuid4()), 1)
    return "count"


def damage_first_missing(s: Scene) -> str:
    s.client.zrem(s.keys.first, s.free)
    return "available:first"


def damage_least_score(s: Scene) -> str:
    members = [m for m in s.client.zrange(s.keys.least, 0, -1) if isinstance(m, bytes)]
    member = next(m for m in members if m.decode().endswith(s.free))
    s.client.zadd(s.keys.least, {member: 5})
    return "available:least"


def damage_rr_extra(s: Scene) -> str:
    s.client.zadd(s.keys.rr, {"not-a-proxy": 0})
    return "available:rr"


def damage_latency_missing(s: Scene) -> str:
    s.client.zrem(s.keys.latency, s.free)
    return "available:latency"


def damage_counter(s: Scene) -> str:
    s.client.hincrby(s.keys.meta, "active", 3)
    return "counter"


def damage_deadline_missing(s: Scene) -> list[str]:
    s.client.zrem(s.keys.deadlines, str(s.active[0].id))
    return ["deadline", "count"]  # the time line indexes the active leases


def damage_deadline_orphan(s: Scene) -> str:
    s.client.zadd(s.keys.deadlines, {str(uuid.uuid4()): 1})
    return "deadline"


def damage_deadline_of_released(s: Scene) -> str:
    s.client.zadd(s.keys.deadlines, {str(s.released.id): 1})
    return "deadline"


def damage_history_missing(s: Scene) -> str:
    s.client.zrem(s.keys.deadlines, str(s.released.id))
    return "history"


def damage_history_orphan(s: Scene) -> str:
    s.client.zadd(s.keys.deadlines, {str(uuid.uuid4()): 1.5})  # .5: a purge time
    return "history"


def damage_history_scored_as_purge(s: Scene) -> list[str]:
    """An active lease scored like a released record: it would be purged, not reclaimed."""
    s.client.zadd(s.keys.deadlines, {str(s.active[0].id): 1.5})
    return ["deadline", "count"]  # counted from the time line, as the scripts see it


def damage_lease_without_proxy(s: Scene) -> str:
    record = json.dumps(
        {"proxy": str(uuid.uuid4()), "consumer": "c", "acquired": "1", "expires": "2"}
    )
    lease_id = str(uuid.uuid4())
    s.client.hset(s.keys.leases, lease_id, record)
    s.client.zadd(s.keys.deadlines, {lease_id: 2})
    return "lease-without-proxy"


def damage_record_without_proxy(s: Scene) -> str:
    s.client.hset(s.keys.records, str(uuid.uuid4()), b"\x93\xa1h\x01\xa4http")
    return "record-without-proxy"


def damage_proxy_without_record(s: Scene) -> str:
    s.client.hdel(s.keys.records, s.free)
    return "proxy-without-record"


def damage_set_not_kept(s: Scene) -> str:
    """A set the pool no longer keeps (its flag is gone) would go stale: it is removed."""
    s.client.hdel(s.keys.meta, "set:latency")
    return "available:latency"


def damage_set_flag_of_missing_set(s: Scene) -> list[str]:
    """The pool believes a set ready that is not there: every available proxy is missing."""
    s.client.delete(s.keys.rr)
    return ["available:rr"] * 5  # the five free proxies


def damage_meta_name(s: Scene) -> str:
    s.client.hset(s.keys.meta, "name", "renamed-halfway")
    return "registry"


def damage_name_missing(s: Scene) -> str:
    s.client.hdel(s.globals.pool_names, "audited")
    return "registry"


def damage_name_dangling(s: Scene) -> str:
    s.client.hset(s.globals.pool_names, "ghost", str(uuid.uuid4()))
    return "registry"


def damage_interrupted_save_pool(s: Scene) -> str:
    """save_pool registered a second pool, then stopped before writing its keys."""
    steps = pools.save_pool(s.storage.context, ProxyPool(name="half-saved"))
    s.storage.executor.execute(next(steps))  # the registry step only
    return "registry"


def damage_interrupted_delete_pool(s: Scene) -> str:
    """delete_pool unregistered the pool, then stopped before removing its keys."""
    steps = pools.delete_pool(s.storage.context, str(s.pool.id))
    s.storage.executor.execute(next(steps))  # the registry step only
    return "unregistered-pool"


def damage_schedule_missing(s: Scene) -> str:
    s.client.zrem(s.globals.deadlines, str(s.pool.id))
    return "schedule"


def damage_schedule_late(s: Scene) -> str:
    s.client.zadd(s.globals.deadlines, {str(s.pool.id): 2**52})
    return "schedule"


def damage_schedule_of_unknown_pool(s: Scene) -> str:
    s.client.zadd(s.globals.deadlines, {str(uuid.uuid4()): 1})
    return "schedule"


def damage_claim_of_unknown_pool(s: Scene) -> str:
    s.client.hset(s.globals.claims, str(uuid.uuid4()), "1")
    return "schedule"


DAMAGE = [
    damage_count,
    damage_count_of_free_proxy,
    damage_count_of_unknown_proxy,
    damage_first_missing,
    damage_least_score,
    damage_rr_extra,
    damage_latency_missing,
    damage_counter,
    damage_deadline_missing,
    damage_deadline_orphan,
    damage_deadline_of_released,
    damage_history_missing,
    damage_history_orphan,
    damage_history_scored_as_purge,
    damage_lease_without_proxy,
    damage_record_without_proxy,
    damage_proxy_without_record,
    damage_set_not_kept,
    damage_set_flag_of_missing_set,
    damage_meta_name,
    damage_name_missing,
    damage_name_dangling,
    damage_interrupted_save_pool,
    damage_interrupted_delete_pool,
    damage_schedule_missing,
    damage_schedule_late,
    damage_schedule_of_unknown_pool,
    damage_claim_of_unknown_pool,
]


def test_a_busy_pool_audits_clean(storage: RedisStorage) -> None:
    scene = Scene(storage)
    manager = RedisProxyManager(storage)
    short = manager.acquire_proxy("audited", duration_seconds=0.05)
    assert short is not None
    time.sleep(0.1)
    assert storage.cleanup_expired_leases() == 1
    storage.delete_proxy(scene.free)
    report = storage.audit()
    assert report.drift == ()
    assert report.clean and not report.repaired
    assert (report.pools, report.proxies, report.active_leases) == (1, 5, 2)


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__[7:] for d in DAMAGE])
def test_drift_is_found_and_repaired(
    storage: RedisStorage, damage: Callable[[Scene], Union[str, list[str]]]
) -> None:
    scene = Scene(storage)
    assert storage.audit().drift == ()
    what = damage(scene)
    expected = [what] if isinstance(what, str) else what

    found = storage.audit()
    assert [d.what for d in found.drift] == expected, found.drift
    assert not found.clean
    assert storage.audit().drift == found.drift, "an audit without repair changes nothing"

    repaired = storage.audit(repair=True)
    assert repaired.repaired
    assert repaired.drift[0] == found.drift[0]
    assert {d.what for d in repaired.drift} <= set(expected), "fixed first, then not seen"
    assert storage.audit().drift == ()

    if what != "unregistered-pool":  # repairing it finishes the pool's deletion
        assert stored_stats(storage, scene.pool) == recomputed_stats(storage, scene.pool)
        manager = RedisProxyManager(storage)
        lease = manager.acquire_proxy("audited", duration_seconds=60)
        assert lease is not None
        manager.release_proxy(lease)
    else:
        assert storage.list_pools() == []
        assert list(storage.client.scan_iter(match=f"{storage.context.keys.prefix}:{{p:*")) == []
    assert storage.audit().drift == ()


def test_a_pool_audit_looks_at_that_pool_only(storage: RedisStorage) -> None:
    scene = Scene(storage)
    other = make_pool(storage, "other")
    storage.save_proxy(make_proxy(other, 0))
    damage_count(scene)
    assert storage.audit("other").drift == ()
    assert storage.audit("other").proxies == 1
    assert [d.what for d in storage.audit("audited").drift] == ["count"]
    assert storage.audit("missing") == AuditReport(0, 0, 0, ())


def test_decoded_clients_audit_the_same(make_storage: Callable[..., RedisStorage]) -> None:
    storage = make_storage(decode_responses=True)
    scene = Scene(storage)
    damage_counter(scene)
    assert [d.what for d in storage.audit().drift] == ["counter"]
    assert storage.audit(repair=True).repaired
    assert storage.audit().drift == ()


def test_async_audit(
    storage: RedisStorage,
    make_async_storage: Callable[..., AsyncRedisStorage],
    loop: Any,
) -> None:
    scene = Scene(storage)
    damage_deadline_missing(scene)
    async_storage = make_async_storage()
    found = loop.run_until_complete(async_storage.audit())
    assert [d.what for d in found.drift] == ["deadline", "count"]
    loop.run_until_complete(async_storage.audit(repair=True))
    assert loop.run_until_complete(async_storage.audit()).drift == ()


@pytest.mark.real_redis
def test_verify_command(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    storage = RedisStorage.from_url(redis_server.url, prefix=prefix)
    scene = Scene(storage)
    base = ["verify", "--url", redis_server.url, "--prefix", prefix]

    assert cli_main(base) == 0
    assert "1 pool(s), 6 prox(ies), 2 active lease(s): 0 drift" in capsys.readouterr().out

    damage_count(scene)
    assert cli_main(base) == 1
    out = capsys.readouterr().out
    held = sum(str(lease.proxy_id) == scene.held for lease in scene.active)
    assert f"1 drift\n  audited: count {scene.held}: found 7, expected {held}\n" in out

    assert cli_main([*base, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["drift"][0]["what"] == "count" and report["clean_after"] is False

    assert cli_main([*base, "--repair"]) == 0
    assert "repaired: audit now clean" in capsys.readouterr().out
    assert cli_main([*base, "--pool", "audited"]) == 0
    capsys.readouterr()

    assert cli_main(["verify", "--url", "redis://127.0.0.1:1/0"]) == 3  # connection error
    assert "error: redis://127.0.0.1:1/0" in capsys.readouterr().err
    storage.client.close()


def test_a_lease_made_while_cleanup_holds_the_pool_stays_scheduled(storage: RedisStorage) -> None:
    """A lease made between cleanup's reclaim and its put-back keeps the pool on the index.

    Cleanup claims the pool, reclaims it (no lease is left), then puts the hint back one
    round trip later. A lease made in between, longer than the claim, must not be forgotten
    by the put-back, or ``cleanup_expired_leases`` would never reclaim it.
    """
    scene = Scene(storage)
    manager = RedisProxyManager(storage)
    for lease in scene.active:
        manager.release_proxy(lease)
    short = manager.acquire_proxy("audited", duration_seconds=0.05)
    assert short is not None
    time.sleep(0.1)

    steps = cleanup.cleanup_expired_leases(storage.context)
    claim = storage.executor.execute(next(steps))  # due.lua: the pool is claimed
    reclaim = storage.executor.execute(steps.send(claim))  # reclaim.lua: nothing left after it
    late = manager.acquire_proxy("audited", duration_seconds=3600)
    assert late is not None
    put_back = storage.executor.execute(steps.send(reclaim))  # due.lua puts the hint back
    with pytest.raises(StopIteration) as done:
        steps.send(put_back)
    assert done.value.value == 1

    assert storage.audit().drift == ()
    hint = storage.client.zscore(scene.globals.deadlines, str(scene.pool.id))
    assert hint is not None and hint <= late.expires_at.timestamp() * 1e6 + 1e6
