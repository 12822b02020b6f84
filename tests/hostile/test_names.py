"""Names: any text is a name, anything else is refused.

A pool or consumer name may be any ``str`` that has a UTF-8 encoding: braces, colons, glob
characters, spaces, newlines, NUL, 10,000 characters, emoji, right-to-left text, the empty
string. Names are hash fields, hash values and script arguments, never part of a key, so
every key stays in its prefix's ``{<prefix>:global}`` slot or its pool's ``{p:<uuid>}``
slot, and a name round-trips exactly (save_pool, get_pool, list_pools, acquire, release,
stats, leases, audit, pharox's stock manager, and through a second storage with cold
caches). Refused with ValueError: anything that is not a ``str`` (None, int, bytes...) and a
``str`` with lone surrogates. A pool description follows the same rule and is checked before
the pool is registered. ``consumer_name=None`` or ``""`` in a manager means pharox's
``"default"``. The empty pool name is never cached, because the scripts read an expected
name of ``''`` as "any name"; a pool renamed or deleted by another process is noticed and
leaves nothing behind. An acquire with a new consumer name does not create the consumer when
it refuses an unencodable pool name."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import pytest
from pharox import Consumer, ProxyManager, ProxyPool, SelectorStrategy

from pharox_redis import RedisProxyManager

from ..helpers import make_pool, make_proxy
from ..helpers.refusals import MakeStorage, Seeded, assert_clean, contents, refuse

# ---------------------------------------------------------------------------- names

ACCEPTED_NAMES = [
    pytest.param("{braces}", id="braces"),
    pytest.param("}{", id="reversed-braces"),
    pytest.param("{p:00000000-0000-0000-0000-000000000000}", id="pool-hash-tag"),
    pytest.param("pharox:{global}:pool-names", id="a-key-name"),
    pytest.param("a:b:c", id="colons"),
    pytest.param(":", id="colon"),
    pytest.param("*", id="star"),
    pytest.param("[a-z]?\\*", id="glob"),
    pytest.param(" spaced out ", id="spaces"),
    pytest.param("new\nline\r\n", id="newlines"),
    pytest.param("tab\there", id="tab"),
    pytest.param("nul\x00byte", id="nul"),
    pytest.param("\x00", id="only-nul"),
    pytest.param("x" * 10_000, id="10k-chars"),
    pytest.param("🚀🦊 pool", id="emoji"),
    pytest.param("שלום עולם", id="hebrew-rtl"),
    pytest.param("مرحبا\u202eevil", id="arabic-rtl-override"),
    pytest.param("zero\u200bwidth\ufeff", id="zero-width"),
    pytest.param("", id="empty"),
]


def _tag(key: bytes) -> str:
    text = key.decode()
    return text[text.index("{") + 1 : text.index("}")]


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
def test_any_text_is_a_name_and_round_trips_exactly(make_storage: MakeStorage, name: str) -> None:
    storage = make_storage()
    pool = ProxyPool(name=name, description=name)
    storage.save_pool(pool)
    proxies = [make_proxy(pool, n, max_concurrency=2) for n in range(2)]
    storage.add_proxies_bulk(proxies)
    assert storage.get_pool(str(pool.id)) == pool
    assert list(storage.list_pools()) == [pool]

    manager = RedisProxyManager(storage)
    leased = manager.acquire(name, consumer_name=name, duration_seconds=60)
    assert leased is not None and leased.lease.pool_name == name
    consumer = name or "default"  # pharox's managers: an empty consumer name is the default
    assert leased.lease.consumer_id == storage.ensure_consumer(consumer)
    stock = storage.create_lease(leased.proxy, name, 60)  # the stock path, consumer as given
    assert stock.pool_name == name and stock.consumer_id == storage.ensure_consumer(name)
    stats = storage.get_pool_stats(name)
    assert stats is not None and stats.pool_name == name and stats.total_leases == 2

    cold = make_storage()  # no cache: every name goes through Redis
    cold_stats = cold.get_pool_stats(name)
    assert cold_stats is not None and cold_stats.total_leases == 2
    assert cold.ensure_consumer(consumer) == leased.lease.consumer_id
    held = cold.get_lease(str(leased.lease.id))
    assert held is not None and held.pool_name == name
    mine = cold.list_leases(str(leased.lease.consumer_id))
    assert leased.lease.id in {lease.id for lease in mine}
    found = cold.find_available_proxy(name, selector=SelectorStrategy.LEAST_USED)
    assert found is not None and found.pool_id == pool.id

    # The name never reaches a key: each key is a global or one of this pool's.
    keys = set(contents(storage))
    pk = storage.context.keys.pool(pool.id)
    allowed = {k.encode() for k in (*storage.context.keys.globals, *pk)}
    allowed |= {pk.health(p.id).encode() for p in proxies}
    assert keys <= allowed
    assert {_tag(k) for k in keys} == {f"{storage.context.keys.prefix}:global", f"p:{pool.id}"}
    assert storage.audit().drift == () and storage.audit(name).drift == ()

    manager.release_proxy(leased)
    storage.release_lease(stock)
    pharox = ProxyManager(storage)  # pharox's stock manager: find, then create the lease
    found_lease = pharox.acquire_proxy(name, consumer_name=name)
    assert found_lease is not None and found_lease.pool_name == name
    pharox.release_proxy(found_lease)
    after = cold.get_pool_stats(name)
    assert after is not None and after.total_leases == 0
    assert storage.audit(name).clean
    storage.delete_pool(str(pool.id))
    assert storage.get_pool_stats(name) is None and cold.get_pool_stats(name) is None
    assert not [k for k in contents(storage) if _tag(k) == f"p:{pool.id}"]
    assert_clean(storage)


@pytest.mark.parametrize(
    ("name", "change"),
    [
        pytest.param("", "rename", id="empty-name-renamed"),
        pytest.param("doomed", "delete", id="deleted"),
    ],
)
def test_a_pool_renamed_or_deleted_elsewhere_is_noticed(
    make_storage: MakeStorage, name: str, change: str
) -> None:
    """Another process renames or deletes a pool this one has resolved: nothing is found or
    leased, and no cleanup hint is left behind. The empty name is never served from a cache,
    as the scripts read an expected name of '' as "any"."""
    a, b = make_storage(), make_storage()
    pool = make_pool(a, name)
    a.save_proxy(make_proxy(pool, max_concurrency=None))
    manager = RedisProxyManager(b)
    first = manager.acquire(name, duration_seconds=60)
    assert first is not None  # b has now resolved the name
    if change == "rename":
        a.save_pool(pool.model_copy(update={"name": "renamed"}))
    else:
        a.delete_pool(str(pool.id))
    assert b.find_available_proxy(name) is None
    assert manager.acquire(name, duration_seconds=60) is None
    assert b.get_pool_stats(name) is None
    assert_clean(a)


REFUSED_NAMES = [
    pytest.param(None, id="None"),
    pytest.param(5, id="int"),
    pytest.param(1.5, id="float"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(["list"], id="list"),
    pytest.param("\ud800", id="lone-surrogate"),
    pytest.param("ok\udfffnot", id="surrogate-inside"),
]


@pytest.mark.parametrize("bad", REFUSED_NAMES)
def test_names_that_are_not_text_are_refused_and_write_nothing(seeded: Seeded, bad: Any) -> None:
    s, m, proxy = seeded.storage, seeded.manager, seeded.proxies[2]
    for call in (
        lambda: s.save_pool(ProxyPool.model_construct(id=uuid.uuid4(), name=bad, description=None)),
        lambda: s.find_available_proxy(bad),
        lambda: s.get_pool_stats(bad),
        lambda: s.ensure_consumer(bad),
        lambda: s.create_lease(proxy, bad, 60),
        lambda: s.add_consumer(Consumer.model_construct(id=uuid.uuid4(), name=bad)),
        lambda: m.acquire(bad, duration_seconds=60),
        lambda: m.acquire_proxy(bad, consumer_name="holder", duration_seconds=60),
        lambda: m.acquire_proxy_with_retry(bad, max_attempts=1, duration_seconds=60),
        lambda: m.with_proxy(bad, duration_seconds=60).__enter__(),
        lambda: ProxyManager(s).acquire_proxy(bad, duration_seconds=60),
    ):
        refuse(s, ValueError, call, match="name")
    if bad is not None:  # None means pharox's default consumer, and every pool to audit
        refuse(s, ValueError, lambda: m.acquire("seed", consumer_name=bad), match="name")
        refuse(s, ValueError, lambda: s.audit(bad), match="name")


@pytest.mark.parametrize(
    "description",
    [pytest.param("\ud800", id="lone-surrogate"), pytest.param(5, id="int"), b"x"],
)
def test_a_bad_description_is_refused_before_the_pool_is_registered(
    seeded: Seeded, description: Any
) -> None:
    s = seeded.storage
    fresh = ProxyPool.model_construct(id=uuid.uuid4(), name="fresh", description=description)
    refuse(s, ValueError, lambda: s.save_pool(fresh), match="description")
    renamed = ProxyPool.model_construct(id=seeded.pool.id, name="new", description=description)
    refuse(s, ValueError, lambda: s.save_pool(renamed), match="description")
    assert [p.name for p in s.list_pools()] == ["seed"]


def test_a_pool_or_consumer_id_that_is_not_a_uuid_is_refused(seeded: Seeded) -> None:
    s = seeded.storage
    for bad_id in ("x", "{x}", None, 5):
        bad = ProxyPool.model_construct(id=bad_id, name="other", description=None)
        refuse(s, ValueError, partial(s.save_pool, bad), match="pool id")
        consumer = Consumer.model_construct(id=bad_id, name="someone")
        refuse(s, ValueError, partial(s.add_consumer, consumer), match="consumer id")
    assert [p.name for p in s.list_pools()] == ["seed"]


def test_a_new_consumer_is_not_created_for_an_unencodable_pool_name(seeded: Seeded) -> None:
    refuse(
        seeded.storage,
        ValueError,
        lambda: seeded.manager.acquire("\ud800", consumer_name="brand-new"),
        match="name",
    )
