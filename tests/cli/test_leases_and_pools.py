"""Finding a stuck lease and releasing it; pools, stats, verify and delete-pool."""

from __future__ import annotations

import pytest

from pharox_redis import Outcome, OutcomePolicy, RedisProxyManager, RedisStorage
from pharox_redis.cli.errors import ExitCode
from pharox_redis.server import RedisServer

from .conftest import Cli

pytestmark = pytest.mark.real_redis

FOUR = "127.0.0.1:9001\n127.0.0.1:9002\n127.0.0.1:9003\n127.0.0.1:9004\n"


def test_find_and_release_a_stuck_lease(cli: Cli, admin: RedisStorage) -> None:
    assert cli("import", "crawl", "-", "--max-concurrency", "1", stdin=FOUR).code == 0
    manager = RedisProxyManager(admin)
    stuck = manager.acquire("crawl", "dead-worker", 3600)
    busy = [manager.acquire("crawl", "live-worker", 60) for _ in range(2)]
    done = manager.acquire("crawl", "live-worker", 60)
    assert stuck is not None and done is not None and all(busy)
    manager.release_proxy(done)

    listed = cli("leases", "crawl", "--json").json()
    assert [row["consumer"] for row in listed] == ["dead-worker", "live-worker", "live-worker"]
    assert listed[0]["id"] == str(stuck.lease.id)
    assert listed[0]["proxy"] == f"{stuck.proxy.host}:{stuck.proxy.port}"
    assert listed[0]["status"] == "active" and listed[0]["expires_in_seconds"] > 3500
    mine = cli("leases", "crawl", "--consumer", "dead-worker", "--json").json()
    assert [row["id"] for row in mine] == [str(stuck.lease.id)]
    table = cli("leases", "crawl").out  # a plain table when piped
    assert table.splitlines()[0] == "3 active lease(s) in pool crawl"
    assert str(stuck.lease.id) in table and "dead-worker" in table

    before = cli("stats", "crawl", "--json").json()
    assert (before["leased_proxies"], before["available_proxies"]) == (3, 1)
    busiest = [(row["leases"], row["max_concurrency"]) for row in before["proxies"]]
    assert busiest == [(1, 1)] * 3  # the leased proxies only, not the idle one
    assert f"{stuck.proxy.host}:{stuck.proxy.port}" in {row["proxy"] for row in before["proxies"]}
    assert before["top_consumers"] == [
        {"consumer": "live-worker", "leases": 2},
        {"consumer": "dead-worker", "leases": 1},
    ]

    released = cli("release", str(stuck.lease.id))
    assert released.code == ExitCode.OK, released.err
    assert released.out == (
        f"released lease {stuck.lease.id} (pool 'crawl', proxy "
        f"{stuck.proxy.host}:{stuck.proxy.port}, consumer 'dead-worker')\n"
    )
    again = cli("release", str(stuck.lease.id))  # idempotent, and says so
    assert again.code == ExitCode.OK
    assert again.out.startswith(f"lease {stuck.lease.id} was already released")
    stats = admin.get_pool_stats("crawl")
    assert stats is not None and (stats.leased_proxies, stats.available_proxies) == (2, 2)
    assert [r["consumer"] for r in cli("leases", "crawl", "--json").json()] == ["live-worker"] * 2
    history = cli("leases", "crawl", "--all", "--json").json()
    assert sorted(r["status"] for r in history) == ["active", "active", "released", "released"]

    (pool,) = cli("pools", "--json").json()
    assert (pool["name"], pool["total_proxies"], pool["leased_proxies"]) == ("crawl", 4, 2)
    assert pool["active_leases"] == 2
    shown = cli("stats", "crawl").out.splitlines()
    assert shown[1].startswith(
        "proxies 4  active 4  available 2  leased 2  in cool-down 0  active leases 2"
    )


def test_verify_and_delete_pool(cli: Cli, admin: RedisStorage) -> None:
    assert cli("import", "audited", "-", stdin=FOUR).code == 0
    clean = cli("verify")
    assert (clean.code, clean.out) == (
        ExitCode.OK,
        "1 pool(s), 4 prox(ies), 0 active lease(s): 0 drift\n",
    )
    (pool,) = admin.list_pools()
    proxy = admin.list_proxies(str(pool.id))[0]
    admin.client.hset(admin.context.keys.pool(pool.id).counts, str(proxy.id), 3)  # drift
    drift = cli("verify", "--pool", "audited", "--json")
    assert drift.code == ExitCode.DRIFT
    assert [d["what"] for d in drift.json()["drift"]] == ["count"]
    repaired = cli("verify", "--repair")
    assert repaired.code == ExitCode.OK and "repaired: audit now clean" in repaired.out

    refused = cli("delete-pool", "audited")  # stdin is not a terminal: --yes is required
    assert refused.code == ExitCode.USAGE
    assert refused.one_error_line() == "error: not deleting pool 'audited' without --yes"
    deleted = cli("delete-pool", "audited", "--yes")
    assert deleted.code == ExitCode.OK and deleted.out.startswith("deleted pool 'audited'")
    assert admin.list_pools() == []


def test_stats_counts_the_proxies_in_a_cool_down(
    cli: Cli, redis_server: RedisServer, prefix: str
) -> None:
    assert cli("import", "cooled", "-", stdin=FOUR).code == 0
    policy = OutcomePolicy(base_seconds=300)  # a cool-down that outlasts the test
    storage = RedisStorage.from_url(redis_server.url, prefix=prefix, outcomes=policy)
    try:
        manager = RedisProxyManager(storage)
        leased = manager.acquire("cooled", "w")
        assert leased is not None
        manager.release_proxy(leased.lease, outcome=Outcome.failed())
    finally:
        storage.client.close()
    shown = cli("stats", "cooled", "--json").json()
    assert (shown["cooling_proxies"], shown["available_proxies"]) == (1, 3)
    assert "in cool-down 1" in cli("stats", "cooled").out
