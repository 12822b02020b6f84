"""Proxies have an identity (their address), pools are found by name, leases by state.

A proxy's address (protocol, host in lower case, port, user) is its identity in its pool:
re-saving a list updates the stored proxies instead of adding copies, atomically in
``lua/save_proxies.lua`` with the pool's ``addresses`` index, which ``delete_proxy.lua``
keeps and the audit checks and repairs. Pools saved before the index existed get it on
their next save.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pharox import (
    PoolNotFoundError,
    Proxy,
    ProxyCredentials,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
)

from pharox_redis import AsyncRedisStorage, RedisProxyManager, RedisStorage
from pharox_redis.operations import proxies as proxy_ops
from pharox_redis.server import RedisServer

from ..helpers import Recorder, make_pool, make_proxy, recomputed_stats, stored_stats

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
CLUSTER = pytest.param("cluster", id="cluster", marks=[pytest.mark.real_redis, pytest.mark.cluster])


def listed(pool: ProxyPool, n: int, **fields: Any) -> list[Proxy]:
    """A proxy list as an import reads it: fresh ids every time."""
    return [make_proxy(pool, i, **fields) for i in range(n)]


def test_saving_the_same_list_twice_leaves_one_proxy_per_address(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    first = storage.save_proxies(listed(pool, 20))
    assert (first.created_count, first.updated_count) == (20, 0)
    again = listed(pool, 20, max_concurrency=3)
    second = storage.save_proxies(again)
    assert (second.created_count, second.updated_count) == (0, 20)
    assert second.ids == first.ids, "an updated proxy keeps its stored id"
    stored = storage.list_proxies(str(pool.id))
    assert len(stored) == 20
    assert {p.max_concurrency for p in stored} == {3}, "the second save updated them"
    assert storage.add_proxies_bulk(listed(pool, 21)) == 21
    assert len(storage.list_proxies(str(pool.id))) == 21
    assert stored_stats(storage, pool) == recomputed_stats(storage, pool)
    assert storage.audit().clean


def test_an_address_is_protocol_host_in_any_case_port_and_user(storage: RedisStorage) -> None:
    pool = make_pool(storage)

    def proxy(host: str, **fields: Any) -> Proxy:
        fields.setdefault("port", 8080)
        fields.setdefault("protocol", ProxyProtocol.HTTP)
        return Proxy(host=host, pool_id=pool.id, status=ProxyStatus.ACTIVE, **fields)

    def creds(user: str, password: str = "pw") -> ProxyCredentials:
        return ProxyCredentials(user=user, password=password)

    saved = storage.save_proxies(
        [
            proxy("Proxy.Example"),
            proxy("proxy.example"),  # the same: host case does not count
            proxy("proxy.example", port=8081),
            proxy("proxy.example", protocol=ProxyProtocol.SOCKS5),
            proxy("proxy.example", credentials=creds("alice")),
            proxy("proxy.example", credentials=creds("alice", "new")),  # same user: same proxy
            proxy("proxy.example", credentials=creds("bob")),
        ]
    )
    assert saved.created == (True, False, True, True, True, False, True)
    assert saved.ids[1] == saved.ids[0] and saved.ids[5] == saved.ids[4]
    stored = {p.id: p for p in storage.list_proxies(str(pool.id))}
    assert len(stored) == 5
    alice = stored[saved.ids[4]].credentials
    assert alice is not None and alice.password == "new", "the later save wins"


def test_a_new_id_on_a_stored_address_updates_the_stored_proxy(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    stored = make_proxy(pool, 1)
    storage.save_proxy(stored)
    newcomer = make_proxy(pool, 1, status=ProxyStatus.INACTIVE)
    storage.add_proxy(newcomer)
    (only,) = storage.list_proxies(str(pool.id))
    assert only.id == stored.id and only.status is ProxyStatus.INACTIVE
    assert storage.get_proxy_by_id(newcomer.id) is None


def test_a_proxy_moved_to_a_new_address_frees_its_old_one(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, 1)
    storage.save_proxy(proxy)
    storage.save_proxy(proxy.model_copy(update={"port": 9999}))
    reuse = storage.save_proxies([make_proxy(pool, 1)])  # the old address is free again
    assert reuse.created == (True,) and reuse.ids[0] != proxy.id
    assert len(storage.list_proxies(str(pool.id))) == 2
    assert storage.audit().clean


def test_taking_another_stored_proxys_address_is_refused_whole(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    a, b = make_proxy(pool, 1), make_proxy(pool, 2)
    storage.add_proxies_bulk([a, b])
    before = storage.list_proxies(str(pool.id))
    moved = a.model_copy(update={"host": b.host, "port": b.port})
    with pytest.raises(ValueError, match="cannot take address"):
        storage.save_proxies([make_proxy(pool, 3), moved])
    assert storage.list_proxies(str(pool.id)) == before, "nothing was written"


def test_a_refusal_in_a_later_chunk_writes_no_earlier_chunk(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    a, b = make_proxy(pool, 1), make_proxy(pool, 2)
    storage.add_proxies_bulk([a, b])
    fresh = [make_proxy(pool, n) for n in range(10, 10 + proxy_ops.SAVE_CHUNK)]
    moved = a.model_copy(update={"host": b.host, "port": b.port})
    with pytest.raises(ValueError, match="cannot take address"):
        storage.save_proxies([*fresh, moved])
    assert len(storage.list_proxies(str(pool.id))) == 2


def test_delete_then_save_again_creates_it_anew(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    proxy = make_proxy(pool, 1)
    storage.save_proxy(proxy)
    storage.delete_proxy(str(proxy.id))
    again = storage.save_proxies([make_proxy(pool, 1)])
    assert again.created == (True,) and again.ids[0] != proxy.id
    assert storage.audit().clean


def test_a_pool_saved_before_the_index_gets_it_on_its_next_save(storage: RedisStorage) -> None:
    """A pool of an earlier version (no ``addresses``, no ``addr`` flag) just works."""
    pool = make_pool(storage)
    storage.add_proxies_bulk(listed(pool, 30))
    keys = storage.context.keys.pool(pool.id)
    storage.client.delete(keys.addresses)
    storage.client.hdel(keys.meta, "addr")
    assert storage.audit().clean, "a pool without the index is no drift"
    saved = storage.save_proxies(listed(pool, 31))
    assert (saved.created_count, saved.updated_count) == (1, 30)
    assert storage.client.hlen(keys.addresses) == 31
    assert storage.audit().clean


def test_a_large_pool_builds_its_index_in_steps(storage: RedisStorage) -> None:
    """An index is built 2,000 records per call (``ensure_addresses``): the save is resent."""
    size = 2100
    pool = make_pool(storage)
    storage.add_proxies_bulk(listed(pool, size))
    keys = storage.context.keys.pool(pool.id)
    storage.client.delete(keys.addresses)
    storage.client.hdel(keys.meta, "addr")
    recorder = Recorder(storage)
    saved = storage.save_proxies(listed(pool, size))
    assert saved.updated_count == size
    chunks = -(-size // proxy_ops.SAVE_CHUNK)
    sent = [c for c in recorder.calls if getattr(c, "name", None) == "save_proxies"]
    assert len(sent) > chunks, "a call per chunk, and the ones resent while it was built"
    assert storage.client.hget(keys.meta, "addr") == b"r"
    assert storage.client.hlen(keys.addresses) == size
    assert storage.audit().clean


@pytest.mark.parametrize(
    "damage",
    ["missing", "dangling", "wrong-address", "other-proxy"],
)
def test_the_audit_finds_and_repairs_the_address_index(storage: RedisStorage, damage: str) -> None:
    pool = make_pool(storage)
    a, b = make_proxy(pool, 1), make_proxy(pool, 2)
    storage.add_proxies_bulk([a, b])
    index = storage.context.keys.pool(pool.id).addresses
    a_address, b_address = "http://10.0.0.2:8001", "http://10.0.0.3:8002"
    assert storage.client.hget(index, a_address) == str(a.id).encode()
    if damage == "missing":
        storage.client.hdel(index, a_address)
    elif damage == "dangling":
        storage.client.hset(index, "http://192.0.2.1:1", str(uuid.uuid4()))
    elif damage == "wrong-address":
        storage.client.hset(index, "http://192.0.2.1:1", str(a.id))
    else:  # a's address names b
        storage.client.hset(index, a_address, str(b.id))
    found = storage.audit()
    assert found.drift and {d.what for d in found.drift} == {"address"}, found.drift
    repaired = storage.audit(repair=True)
    # The same drift (a repair of the first may change what the second one found).
    assert [(d.what, d.subject) for d in repaired.drift] == [
        (d.what, d.subject) for d in found.drift
    ]
    assert storage.audit().clean
    assert storage.client.hgetall(index) == {
        a_address.encode(): str(a.id).encode(),
        b_address.encode(): str(b.id).encode(),
    }


@pytest.mark.parametrize("backend", [CLUSTER], indirect=True)
def test_the_address_index_lives_in_the_pools_slot(storage: RedisStorage) -> None:
    """On a Redis Cluster every save and delete stays in the pool's slot."""
    pool = make_pool(storage)
    recorder = Recorder(storage)
    first = storage.save_proxies(listed(pool, 10))
    second = storage.save_proxies(listed(pool, 10))
    assert second.ids == first.ids and second.created_count == 0
    storage.delete_proxy(str(first.ids[0]))
    assert storage.save_proxies(listed(pool, 1)).created == (True,)
    keys = storage.context.keys.pool(pool.id)
    for call in recorder.calls:
        if getattr(call, "name", None) in ("save_proxies", "delete_proxy"):
            assert keys.addresses in call.keys
            assert all(key.startswith(keys.tag) for key in call.keys)
    assert storage.audit().clean


# ---------------------------------------------------------------- pools by name


def test_get_pool_by_name_and_ensure_pool(storage: RedisStorage) -> None:
    with pytest.raises(PoolNotFoundError):
        storage.get_pool_by_name("residential")
    made = storage.ensure_pool("residential", "first run")
    assert storage.get_pool_by_name("residential") == made
    again = storage.ensure_pool("residential", "second run")
    assert again == made and again.description == "first run", "the stored pool, unchanged"
    with pytest.raises(PoolNotFoundError):
        storage.get_pool_by_name("Residential")  # names are case-sensitive
    storage.save_pool(made.model_copy(update={"name": "renamed"}))
    with pytest.raises(PoolNotFoundError):
        storage.get_pool_by_name("residential")  # the cached name is checked
    assert storage.get_pool_by_name("renamed").id == made.id


def test_ensure_pool_finishes_a_save_pool_cut_in_two(storage: RedisStorage) -> None:
    """A name registered whose pool keys were never written is the pool of that name."""
    pool = ProxyPool(name="half")
    g = storage.context.keys.globals
    storage.client.hset(g.pool_ids, str(pool.id), "half")
    storage.client.hset(g.pool_names, "half", str(pool.id))
    assert storage.ensure_pool("half").id == pool.id
    assert storage.get_pool(str(pool.id)).name == "half"
    assert storage.audit().clean


@pytest.mark.real_redis
def test_the_readme_quickstart_runs_twice(
    redis_server: RedisServer, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "ensure_pool" in b][
        :1
    ]
    address = 'RedisStorage.from_url("redis://127.0.0.1:6379/0")'
    assert address in block
    code = block.replace(address, f"RedisStorage.from_url({redis_server.url!r}, prefix={prefix!r})")
    for _ in range(2):
        scope: dict[str, Any] = {}
        exec(compile(code, "README.md", "exec"), scope)
        scope["storage"].client.close()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == printed[2] == "http://203.0.113.7:8080"
    storage = RedisStorage.from_url(redis_server.url, prefix=prefix)
    try:
        pool = storage.get_pool_by_name("residential")
        assert len(storage.list_proxies(str(pool.id))) == 1
    finally:
        storage.client.close()


# ---------------------------------------------------------------- list_leases


def test_list_leases_active_only_by_pool_and_consumer_name(storage: RedisStorage) -> None:
    pool = make_pool(storage)
    other = make_pool(storage, "other")
    storage.add_proxies_bulk([make_proxy(pool, 1), make_proxy(other, 2)])
    manager = RedisProxyManager(storage)
    held = manager.acquire_proxy("pool", "w1")
    done = manager.acquire_proxy("pool", "w2")
    elsewhere = manager.acquire_proxy("other", "w1")
    assert held is not None and done is not None and elsewhere is not None
    manager.release_proxy(done)
    assert {x.id for x in storage.list_leases()} == {held.id, done.id, elsewhere.id}
    assert {x.id for x in storage.list_leases(active_only=True)} == {held.id, elsewhere.id}
    assert [x.id for x in storage.list_leases("w1", pool_name="pool")] == [held.id]
    assert [x.id for x in storage.list_leases(str(held.consumer_id), active_only=True)] == [
        held.id,
        elsewhere.id,
    ]
    assert [x.id for x in storage.list_leases("w2")] == [done.id]
    assert storage.list_leases("w2", active_only=True) == []
    assert storage.list_leases("nobody") == []
    with pytest.raises(PoolNotFoundError):
        storage.list_leases(pool_name="nosuch")


# ---------------------------------------------------------------- asyncio


def test_the_async_storage_has_the_same_api(
    make_async_storage: Callable[..., AsyncRedisStorage], loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        storage = make_async_storage()
        pool = await storage.ensure_pool("async")
        assert (await storage.ensure_pool("async")).id == pool.id
        assert (await storage.get_pool_by_name("async")).id == pool.id
        first = await storage.save_proxies(listed(pool, 5))
        second = await storage.save_proxies(listed(pool, 5))
        assert second.ids == first.ids and second.updated_count == 5
        assert await storage.add_proxies_bulk(listed(pool, 5)) == 5
        assert len(await storage.list_proxies(str(pool.id))) == 5
        assert await storage.list_leases("nobody", active_only=True) == []
        (stats,) = await storage.list_pool_stats()
        assert (stats.pool_name, stats.total_proxies) == ("async", 5)

    loop.run_until_complete(scenario())
