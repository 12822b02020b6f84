"""Hostile and invalid input: every refusal is clear, writes nothing and leaves the audit clean.

Each case runs on fakeredis and on a private redis-server. A refused call raises ValueError
(pydantic's ValidationError is one) or a pharox error (``PoolNotFoundError``,
``ProxyNotFoundError``, ``InvalidLeaseError``...), never a redis-py error and never
``RedisStorageError`` (so no Lua error either): everything is checked before anything is
sent. The keys under the test's prefix are then byte for byte what they were, and
``storage.audit().drift`` is empty.

The rules:

* **Names.** A pool or consumer name may be any ``str`` that has a UTF-8 encoding: braces,
  colons, glob characters, spaces, newlines, NUL, 10,000 characters, emoji, right-to-left
  text, the empty string. Names are hash fields, hash values and script arguments, never
  part of a key, so every key stays in the ``{global}`` slot or its pool's ``{p:<uuid>}``
  slot, and a name round-trips exactly (save_pool, get_pool, list_pools, acquire, release,
  stats, leases, audit, and through a second storage with cold caches). Refused with
  ValueError: anything that is not a ``str`` (None, int, bytes...) and a ``str`` with lone
  surrogates. A pool description follows the same rule and is checked before the pool is
  registered. ``consumer_name=None`` or ``""`` in a manager means pharox's ``"default"``.
  The empty pool name is never cached, because the scripts read an expected name of ``''``
  as "any name".
* **Ids.** An id that is not a UUID names nothing: ``get_proxy``/``delete_proxy`` raise
  ProxyNotFoundError, ``get_pool``/``delete_pool``/``list_proxies`` PoolNotFoundError,
  ``get_lease`` and ``get_proxy_by_id`` return None, ``list_leases`` and
  ``list_health_records`` return []. Releasing a lease whose id (or pool id) is not a UUID
  is a no-op; renewing it raises LeaseLostError. Other spellings of a UUID (upper case,
  braces, ``urn:uuid:``) name the same object.
* **Durations.** A lease duration is an int or float (not bool) in (0, 100 years];
  anything else raises InvalidLeaseError, through ``create_lease``, the manager's
  ``acquire*``/``with_proxy`` and ``renew_lease`` alike.
* **Coordinates.** Latitude and longitude are finite numbers (not bool) within ±90 and ±180,
  set together; otherwise ValueError from ``save_proxy`` and from any filter holding them.
  A filter radius must be finite (pydantic already refuses NaN, zero and negatives).
* **Filters.** At most 32 levels deep and 1,024 clauses (``filters.py``): ValueError before
  anything is sent; a cycle counts as too deep, so no RecursionError and no Lua stack
  overflow. pydantic builds a 1,000-deep tree one level at a time without complaint, but
  ``ProxyFilters.model_validate`` of a 1,000-deep dict raises pydantic's own
  ValidationError (recursion_depth_exceeded) before the adapter sees it.
* **Proxies.** pydantic validates neither attribute assignment nor ``model_construct``, so
  ``save_proxy`` re-checks what pharox's model would: port an int in 1..65535 (not bool),
  protocol and status members of their enums, max_concurrency an int in 1..10**12 or None,
  host a non-empty str or IP address without whitespace or control characters, source,
  country, city and isp str or None, asn int or None, credentials a ``ProxyCredentials``
  of two str, checked_at a datetime, id and pool_id UUIDs; ValueError otherwise. A pool
  that does not exist raises PoolNotFoundError (and ``create_lease`` on its proxy
  ProxyNotFoundError, leaving no cleanup hint behind). ``current_leases`` is ignored: the
  storage owns the count. A whole bulk save is refused when one proxy is, or when one
  proxy id is given for two pools.
* **Health.** pharox's Proxy has no latency field: a latency only arrives with a health
  result or record, whose latency_ms is None or a number in 0..10**12 (not NaN, not
  negative); status and protocol members of their enums; ValueError otherwise. 10**12 is
  also the largest max_concurrency: Lua's cjson writes numbers with 14 significant digits.
* **Predicates.** A filter predicate that raises: the exception propagates, nothing is
  leased or written.
* **Tenants.** Two prefixes on one Redis never see each other's data, also when one prefix
  is a prefix of the other (``a`` and ``a:b``, ``a`` and ``ab``) or holds glob characters
  (``*``, ``?``, ``[``): same pool ids and names, same proxy ids, leases, cleanup and
  audit stay apart. A prefix that is not a non-empty ``str`` without ``{`` and ``}`` is
  refused.
* **Wrong types.** A pharox model argument that is not that model (``save_pool(None)``,
  ``release_lease("id")``, ``filters={...}``) raises ValueError.

Also: ``renew_lease`` of something that is not a Lease is refused; an acquire on a cached
pool that another process deleted leaves no cleanup hint behind; and an acquire with a new
consumer name does not create the consumer when it refuses an unencodable pool name.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import Any, Optional

import pytest
import redis
from pharox import (
    Consumer,
    HealthCheckResult,
    InvalidLeaseError,
    Lease,
    LeaseStatus,
    PharoxError,
    PoolNotFoundError,
    Proxy,
    ProxyCredentials,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyManager,
    ProxyNotFoundError,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import KeySchema, LeaseLostError, RedisProxyManager, RedisStorage
from pharox_redis.errors import RedisStorageError
from pharox_redis.filters import MAX_FILTER_DEPTH, MAX_FILTER_NODES
from pharox_redis.operations.validation import MAX_LEASE_SECONDS

from .helpers import AsyncFacade, make_pool, make_proxy

MakeStorage = Callable[..., RedisStorage]

# ---------------------------------------------------------------------------- helpers


def _glob(prefix: str) -> str:
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return escaped + ":{*"


def _contents(storage: RedisStorage) -> dict[bytes, Any]:
    """Every key of a storage's prefix with its type and full value."""
    client = storage.client
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=_glob(storage.context.keys.prefix), count=1000):
        raw = key if isinstance(key, bytes) else key.encode()
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            value = client.get(key)
        elif kind == "set":
            value = client.smembers(key)
        else:
            value = client.lrange(key, 0, -1)
        out[raw] = (kind, value)
    return out


def _no_redis_error(exc: BaseException) -> None:
    """A refusal must come from validation, not from Redis or a script."""
    assert not isinstance(exc, (RedisStorageError, redis.RedisError)), exc
    seen: Optional[BaseException] = exc
    while seen is not None:
        assert not isinstance(seen, redis.RedisError), seen
        seen = seen.__cause__ or seen.__context__


def _assert_clean(storage: RedisStorage) -> None:
    assert storage.audit().drift == ()


def refuse(
    storage: RedisStorage,
    expected: type[BaseException] | tuple[type[BaseException], ...],
    call: Callable[[], Any],
    match: Optional[str] = None,
) -> BaseException:
    """Run a call that must be refused: the error expected, nothing written, audit clean."""
    before = _contents(storage)
    with pytest.raises(expected, match=match) as info:
        call()
    _no_redis_error(info.value)
    assert _contents(storage) == before, "a refused call wrote to Redis"
    _assert_clean(storage)
    return info.value


@contextmanager
def writes_nothing(storage: RedisStorage) -> Iterator[None]:
    """The block may return normally but must not change any key; the audit stays clean."""
    before = _contents(storage)
    yield
    assert _contents(storage) == before
    _assert_clean(storage)


class Seeded:
    """A storage holding a pool with proxies, an active and a released lease, a health row."""

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        self.manager = RedisProxyManager(storage)
        self.pool = make_pool(storage, "seed")
        self.proxies = [make_proxy(self.pool, n, max_concurrency=2) for n in range(3)]
        storage.add_proxies_bulk(self.proxies)
        self.lease = storage.create_lease(self.proxies[0], "holder", 60)
        storage.release_lease(storage.create_lease(self.proxies[1], "holder", 60))
        storage.apply_health_check_result(
            HealthCheckResult(
                proxy_id=self.proxies[2].id,
                status=ProxyStatus.ACTIVE,
                latency_ms=12,
                protocol=ProxyProtocol.HTTP,
            )
        )
        storage.ensure_consumer("default")  # pharox's stock manager creates it first thing
        _assert_clean(storage)


@pytest.fixture
def seeded(storage: RedisStorage) -> Seeded:
    return Seeded(storage)


def _modified(proxy: Proxy, **fields: Any) -> Proxy:
    """A copy of ``proxy`` with fields set the way pydantic lets them through: unvalidated."""
    copy = proxy.model_copy()
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def _filters(**fields: Any) -> ProxyFilters:
    """ProxyFilters without validation (model_construct), for values pydantic would refuse."""
    return ProxyFilters.model_construct(**fields)


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
    keys = set(_contents(storage))
    pk = storage.context.keys.pool(pool.id)
    allowed = {k.encode() for k in (*storage.context.keys.globals, *pk)}
    allowed |= {pk.health(p.id).encode() for p in proxies}
    assert keys <= allowed
    assert {_tag(k) for k in keys} == {"global", f"p:{pool.id}"}
    assert storage.audit().drift == () and storage.audit(name).drift == ()

    manager.release_proxy(leased)
    storage.release_lease(stock)
    after = cold.get_pool_stats(name)
    assert after is not None and after.total_leases == 0
    assert storage.audit(name).clean
    storage.delete_pool(str(pool.id))
    assert storage.get_pool_stats(name) is None and cold.get_pool_stats(name) is None
    _assert_clean(storage)


def test_the_empty_pool_name_is_never_served_from_a_stale_cache(
    make_storage: MakeStorage,
) -> None:
    """Scripts read an expected name of '' as "any": a renamed pool must still be noticed."""
    a, b = make_storage(), make_storage()
    pool = make_pool(a, "")
    a.save_proxy(make_proxy(pool, max_concurrency=None))
    manager = RedisProxyManager(b)
    first = manager.acquire("", duration_seconds=60)
    assert first is not None  # b has now resolved ""
    a.save_pool(pool.model_copy(update={"name": "renamed"}))
    assert b.find_available_proxy("") is None
    assert manager.acquire("", duration_seconds=60) is None
    assert b.get_pool_stats("") is None
    _assert_clean(a)


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


# ---------------------------------------------------------------------------- ids

BAD_IDS = [
    "x",
    "../",
    "../../etc/passwd",
    "{x}",
    "}{",
    "",
    " ",
    "*",
    "nope",
    "\x00",
    "\n",
    "x" * 10_000,
    "🚀",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-0000000000000",
    None,
    5,
    3.5,
    b"\x00" * 16,
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v)[:20])
def test_ids_that_are_not_uuids_name_nothing(seeded: Seeded, bad: Any) -> None:
    s = seeded.storage
    refuse(s, ProxyNotFoundError, lambda: s.get_proxy(bad))
    refuse(s, ProxyNotFoundError, lambda: s.delete_proxy(bad))
    refuse(s, PoolNotFoundError, lambda: s.get_pool(bad))
    refuse(s, PoolNotFoundError, lambda: s.delete_pool(bad))
    refuse(s, PoolNotFoundError, lambda: s.list_proxies(bad))
    with writes_nothing(s):
        assert s.get_lease(bad) is None
        assert s.get_proxy_by_id(bad) is None
        assert s.list_leases(bad) == [] or bad is None  # None: every consumer's leases
        assert s.list_health_records(bad) == []
        assert s.get_last_health_result(bad) is None
        assert (
            s.apply_health_check_result(
                HealthCheckResult.model_construct(
                    proxy_id=bad,
                    status=ProxyStatus.ACTIVE,
                    latency_ms=1,
                    protocol=ProxyProtocol.HTTP,
                    checked_at=datetime.now(timezone.utc),
                    error_message=None,
                )
            )
            is None
        )
    assert len(s.list_proxies(str(seeded.pool.id))) == 3


def test_other_spellings_of_a_uuid_name_the_same_objects(seeded: Seeded) -> None:
    s, proxy, lease = seeded.storage, seeded.proxies[0], seeded.lease
    for spell in (str.upper, lambda v: "{" + v + "}", lambda v: "urn:uuid:" + v):
        with writes_nothing(s):
            assert s.get_proxy(spell(str(proxy.id))).id == proxy.id
            assert s.get_pool(spell(str(seeded.pool.id))).id == seeded.pool.id
            held = s.get_lease(spell(str(lease.id)))
            assert held is not None and held.id == lease.id
    s.delete_proxy("urn:uuid:" + str(seeded.proxies[2].id))
    assert len(s.list_proxies(str(seeded.pool.id))) == 2
    _assert_clean(s)


@pytest.mark.parametrize("lease_id", ["x", "../", "{x}", None, 5, ""])
@pytest.mark.parametrize("pool_id", ["real", "x", "{x}", None])
def test_releasing_or_renewing_a_lease_with_a_weird_id_changes_nothing(
    seeded: Seeded, lease_id: Any, pool_id: Any
) -> None:
    s, m, real = seeded.storage, seeded.manager, seeded.lease
    weird = Lease.model_construct(
        id=lease_id,
        proxy_id=real.proxy_id,
        consumer_id=real.consumer_id,
        pool_id=real.pool_id if pool_id == "real" else pool_id,
        pool_name="seed",
        status=LeaseStatus.ACTIVE,
        acquired_at=real.acquired_at,
        expires_at=real.expires_at,
        released_at=None,
    )
    with writes_nothing(s):
        s.release_lease(weird)
        m.release_proxy(weird)
    refuse(s, LeaseLostError, lambda: m.renew_lease(weird, 30))
    held = s.get_lease(str(real.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE
    assert s.get_proxy(str(real.proxy_id)).current_leases == 1


def test_a_lease_of_another_pool_or_a_wrong_pool_id_is_not_released(seeded: Seeded) -> None:
    s, real = seeded.storage, seeded.lease
    other = make_pool(s, "other")
    for pool_id in (other.id, uuid.uuid4()):
        moved = real.model_copy(update={"pool_id": pool_id})
        with writes_nothing(s):
            s.release_lease(moved)
        refuse(s, LeaseLostError, partial(seeded.manager.renew_lease, moved, 30))
    held = s.get_lease(str(real.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE


# ---------------------------------------------------------------------------- durations

BAD_DURATIONS = [
    0,
    0.0,
    -0.0,
    -1,
    -1e-9,
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    10**400,
    MAX_LEASE_SECONDS + 1,
    "5",
    "",
    None,
    True,
    False,
    [],
    Decimal("5"),
    1j,
]


@pytest.mark.parametrize("duration", BAD_DURATIONS, ids=lambda v: repr(v)[:20])
def test_bad_durations_are_refused_everywhere(seeded: Seeded, duration: Any) -> None:
    s, m = seeded.storage, seeded.manager
    for call in (
        lambda: s.create_lease(seeded.proxies[2], "c", duration),
        lambda: m.acquire("seed", consumer_name="c", duration_seconds=duration),
        lambda: m.acquire_proxy("seed", duration_seconds=duration),
        lambda: m.acquire_proxy_with_retry("seed", duration_seconds=duration, max_attempts=1),
        lambda: m.with_proxy("seed", duration_seconds=duration).__enter__(),
        lambda: m.renew_lease(seeded.lease, duration),
    ):
        refuse(s, InvalidLeaseError, call)
    expires = seeded.lease.expires_at
    held = s.get_lease(str(seeded.lease.id))
    assert held is not None and held.expires_at == expires  # the renewal did not happen
    assert len(s.list_leases()) == 2


@pytest.mark.parametrize("duration", [1e-300, 1e-6, MAX_LEASE_SECONDS, float(MAX_LEASE_SECONDS)])
def test_extreme_but_valid_durations_are_accepted(seeded: Seeded, duration: float) -> None:
    s, m = seeded.storage, seeded.manager
    leased = m.acquire("seed", duration_seconds=duration)
    assert leased is not None
    expected = max(1, round(duration * 1_000_000))
    got = leased.lease.expires_at - leased.lease.acquired_at
    assert round(got.total_seconds() * 1_000_000) == expected
    if duration > 1:
        assert m.renew_lease(leased, duration).expires_at >= leased.lease.acquired_at
    m.release_proxy(leased)
    s.cleanup_expired_leases()
    _assert_clean(s)


# ---------------------------------------------------------------------------- coordinates

BAD_COORDINATES = [
    (math.nan, 0.0),
    (0.0, math.nan),
    (91.0, 0.0),
    (-90.000001, 0.0),
    (0.0, 181.0),
    (0.0, -181.0),
    (math.inf, 0.0),
    (0.0, -math.inf),
    (1e300, 1e300),
    (1.0, None),
    (None, 1.0),
    ("1", "2"),
    (True, True),
]


@pytest.mark.parametrize(("lat", "lon"), BAD_COORDINATES, ids=repr)
def test_bad_coordinates_are_refused_by_save_proxy(seeded: Seeded, lat: Any, lon: Any) -> None:
    s = seeded.storage
    fresh = _modified(make_proxy(seeded.pool, 9), latitude=lat, longitude=lon)
    refuse(s, ValueError, lambda: s.save_proxy(fresh), match="latitude|longitude")
    existing = _modified(seeded.proxies[0], latitude=lat, longitude=lon)
    refuse(s, ValueError, lambda: s.add_proxies_bulk([seeded.proxies[1], existing]))
    assert s.get_proxy(str(seeded.proxies[0].id)).latitude is None


@pytest.mark.parametrize(("lat", "lon"), [(90.0, 180.0), (-90.0, -180.0), (0.0, -0.0)])
def test_coordinates_on_the_edges_round_trip(seeded: Seeded, lat: float, lon: float) -> None:
    s = seeded.storage
    proxy = make_proxy(seeded.pool, 9, latitude=lat, longitude=lon)
    s.save_proxy(proxy)
    stored = s.get_proxy(str(proxy.id))
    assert (stored.latitude, stored.longitude) == (lat, lon)
    near = ProxyFilters(latitude=lat, longitude=lon, radius_km=1)
    leased = seeded.manager.acquire("seed", filters=near, duration_seconds=60)
    assert leased is not None and leased.proxy.id == proxy.id
    _assert_clean(s)


BAD_GEO_FILTERS = [
    pytest.param(dict(latitude=math.nan, longitude=0.0, radius_km=10.0), id="lat-nan"),
    pytest.param(dict(latitude=91.0, longitude=0.0, radius_km=10.0), id="lat-91"),
    pytest.param(dict(latitude=-91.0, longitude=0.0), id="lat-91-exact"),
    pytest.param(dict(latitude=0.0, longitude=-181.0, radius_km=10.0), id="lon-181"),
    pytest.param(dict(latitude=0.0, longitude=math.inf, radius_km=10.0), id="lon-inf"),
    pytest.param(dict(latitude=math.inf, longitude=0.0), id="lat-inf-exact"),
    pytest.param(dict(latitude=0.0, longitude=0.0, radius_km=math.inf), id="radius-inf"),
    pytest.param(dict(latitude=0.0, longitude=0.0, radius_km=math.nan), id="radius-nan"),
    pytest.param(dict(latitude="0", longitude="0", radius_km=1.0), id="lat-str"),
    pytest.param(dict(latitude=0.0, longitude=0.0, radius_km="far"), id="radius-str"),
]


@pytest.mark.parametrize("fields", BAD_GEO_FILTERS)
@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_bad_geo_filters_are_refused(seeded: Seeded, fields: dict[str, Any], nested: bool) -> None:
    s, m = seeded.storage, seeded.manager
    bad = _filters(**fields)
    if nested:
        bad = ProxyFilters(any_of=[ProxyFilters(country="AR"), ProxyFilters(none_of=[bad])])
    for call in (
        lambda: s.find_available_proxy("seed", bad),
        lambda: m.acquire("seed", filters=bad, duration_seconds=60),
        lambda: ProxyManager(s).acquire_proxy("seed", filters=bad, duration_seconds=60),
    ):
        refuse(s, ValueError, call, match="latitude|longitude|radius")


def test_pydantic_itself_refuses_a_non_positive_or_nan_radius() -> None:
    for radius in (0, -1, math.nan):
        with pytest.raises(ValueError):
            ProxyFilters(latitude=0, longitude=0, radius_km=radius)


# ---------------------------------------------------------------------------- filter size


def _deep(levels: int, key: str = "all_of", leaf: Optional[ProxyFilters] = None) -> ProxyFilters:
    """A chain of ``levels`` nested filters (the outermost counts as level 1)."""
    node = leaf or ProxyFilters(country="AR")
    for _ in range(levels - 1):
        node = ProxyFilters.model_validate({key: [node]})
    return node


def _wide(clauses: int) -> ProxyFilters:
    """One any_of with ``clauses - 1`` alternatives: ``clauses`` nodes in all."""
    return ProxyFilters(any_of=[ProxyFilters(country=f"C{i}") for i in range(clauses - 1)])


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param(_deep(1000), id="all_of-1000-deep"),
        pytest.param(_deep(1000, "any_of"), id="any_of-1000-deep"),
        pytest.param(_deep(1000, "none_of"), id="none_of-1000-deep"),
        pytest.param(_deep(MAX_FILTER_DEPTH + 1), id="one-level-too-deep"),
        pytest.param(_deep(1000, leaf=ProxyFilters(predicate=lambda p: True)), id="deep-predicate"),
        pytest.param(_wide(10_000), id="10000-alternatives"),
        pytest.param(_wide(MAX_FILTER_NODES + 1), id="one-clause-too-many"),
        pytest.param(ProxyFilters(all_of=[_wide(600), _wide(600)]), id="too-many-clauses-in-total"),
    ],
)
def test_filters_too_deep_or_too_wide_are_refused(seeded: Seeded, filters: ProxyFilters) -> None:
    s, m = seeded.storage, seeded.manager
    for call in (
        lambda: s.find_available_proxy("seed", filters),
        lambda: m.acquire("seed", filters=filters, duration_seconds=60),
        lambda: m.acquire_proxy_with_retry(
            "seed", filters=filters, max_attempts=1, duration_seconds=60
        ),
        lambda: ProxyManager(s).acquire_proxy("seed", filters=filters, duration_seconds=60),
    ):
        refuse(s, ValueError, call, match="deep|clauses")


def test_a_cyclic_filter_is_refused_as_too_deep(seeded: Seeded) -> None:
    cyclic = ProxyFilters(country="AR")
    cyclic.any_of = [cyclic]
    refuse(seeded.storage, ValueError, lambda: seeded.manager.acquire("seed", filters=cyclic))


def test_filters_at_the_limits_are_evaluated_correctly(seeded: Seeded) -> None:
    s, m = seeded.storage, seeded.manager
    target = seeded.proxies[2]
    s.save_proxy(target.model_copy(update={"country": "AR"}))
    deepest = _deep(MAX_FILTER_DEPTH)
    chain = _deep(MAX_FILTER_DEPTH - 1)  # one level down, inside the any_of
    others = MAX_FILTER_NODES - 1 - (MAX_FILTER_DEPTH - 1)  # the any_of node, the chain
    widest = ProxyFilters(any_of=[*(ProxyFilters(country=f"C{i}") for i in range(others)), chain])
    for filters in (deepest, widest, _deep(MAX_FILTER_DEPTH, "any_of")):
        found = s.find_available_proxy("seed", filters)
        assert found is not None and found.id == target.id
    assert s.find_available_proxy("seed", _deep(MAX_FILTER_DEPTH, "none_of")) is not None
    assert s.find_available_proxy("seed", _wide(MAX_FILTER_NODES)) is None
    leased = m.acquire("seed", filters=widest, duration_seconds=60)
    assert leased is not None and leased.proxy.id == target.id
    m.release_proxy(leased)
    _assert_clean(s)


def test_pydantic_refuses_a_1000_deep_filter_dict_before_the_adapter_sees_it() -> None:
    data: dict[str, Any] = {"country": "AR"}
    for _ in range(1000):
        data = {"all_of": [data]}
    with pytest.raises(ValueError, match="recursion"):
        ProxyFilters.model_validate(data)


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param("country=AR", id="str"),
        pytest.param({"country": "AR"}, id="dict"),
        pytest.param(ProxyFilters.model_construct(any_of=["x"]), id="child-str"),
        pytest.param(ProxyFilters.model_construct(all_of=[None, 5]), id="child-int"),
        pytest.param(_filters(country=5), id="country-int"),
        pytest.param(_filters(asn="13335"), id="asn-str"),
    ],
)
def test_filters_of_the_wrong_type_are_refused(seeded: Seeded, filters: Any) -> None:
    s, m = seeded.storage, seeded.manager
    refuse(s, ValueError, lambda: s.find_available_proxy("seed", filters))
    refuse(s, ValueError, lambda: m.acquire("seed", filters=filters, duration_seconds=60))


# ---------------------------------------------------------------------------- proxies

BAD_PROXY_FIELDS = [
    pytest.param(dict(port=0), id="port-0"),
    pytest.param(dict(port=70_000), id="port-70000"),
    pytest.param(dict(port=-1), id="port-negative"),
    pytest.param(dict(port=True), id="port-bool"),
    pytest.param(dict(port="8080"), id="port-str"),
    pytest.param(dict(port=80.0), id="port-float"),
    pytest.param(dict(protocol="gopher"), id="protocol-unknown"),
    pytest.param(dict(protocol=None), id="protocol-None"),
    pytest.param(dict(status="zombie"), id="status-unknown"),
    pytest.param(dict(status=None), id="status-None"),
    pytest.param(dict(max_concurrency=0), id="max-0"),
    pytest.param(dict(max_concurrency=-1), id="max-negative"),
    pytest.param(dict(max_concurrency=1.5), id="max-float"),
    pytest.param(dict(max_concurrency=True), id="max-bool"),
    pytest.param(dict(max_concurrency=10**20), id="max-huge"),
    pytest.param(dict(host="evil\nHost: x"), id="host-newline"),
    pytest.param(dict(host="a\x00b"), id="host-nul"),
    pytest.param(dict(host=""), id="host-empty"),
    pytest.param(dict(host="a b"), id="host-space"),
    pytest.param(dict(host="\t"), id="host-tab"),
    pytest.param(dict(host="a\u2028b"), id="host-line-separator"),
    pytest.param(dict(host=None), id="host-None"),
    pytest.param(dict(host=b"10.0.0.1"), id="host-bytes"),
    pytest.param(dict(host="\ud800"), id="host-surrogate"),
    pytest.param(dict(source=5), id="source-int"),
    pytest.param(dict(country=["AR"]), id="country-list"),
    pytest.param(dict(city=b"x"), id="city-bytes"),
    pytest.param(dict(isp="\udfff"), id="isp-surrogate"),
    pytest.param(dict(asn="13335"), id="asn-str"),
    pytest.param(dict(credentials="user:pass"), id="credentials-str"),
    pytest.param(
        dict(credentials=ProxyCredentials.model_construct(user=5, password="p")),
        id="credentials-int-user",
    ),
    pytest.param(dict(id="not-a-uuid"), id="id-str"),
    pytest.param(dict(pool_id="not-a-uuid"), id="pool-id-str"),
    pytest.param(dict(pool_id=None), id="pool-id-None"),
    pytest.param(dict(checked_at=None), id="checked-at-None"),
    pytest.param(dict(checked_at="2026-01-01"), id="checked-at-str"),
]


@pytest.mark.parametrize("fields", BAD_PROXY_FIELDS)
def test_proxies_with_invalid_fields_are_refused(seeded: Seeded, fields: dict[str, Any]) -> None:
    s = seeded.storage
    fresh = _modified(make_proxy(seeded.pool, 9), **fields)
    refuse(s, ValueError, lambda: s.save_proxy(fresh))
    refuse(s, ValueError, lambda: s.add_proxies_bulk([make_proxy(seeded.pool, 10), fresh]))
    existing = _modified(seeded.proxies[0], **fields)
    refuse(s, ValueError, lambda: s.save_proxy(existing))
    assert [p.id for p in s.list_proxies(str(seeded.pool.id))] == sorted(
        p.id for p in seeded.proxies
    )


def test_a_proxy_of_a_pool_that_does_not_exist_is_refused(seeded: Seeded) -> None:
    s = seeded.storage
    ghost = ProxyPool(name="ghost")
    orphan = make_proxy(ghost, 9)
    refuse(s, PoolNotFoundError, lambda: s.save_proxy(orphan))
    refuse(s, PoolNotFoundError, lambda: s.add_proxies_bulk([make_proxy(seeded.pool, 8), orphan]))
    refuse(s, ProxyNotFoundError, lambda: s.create_lease(orphan, "holder", 60))
    moved = seeded.proxies[2].model_copy(update={"pool_id": ghost.id})
    refuse(s, PoolNotFoundError, lambda: s.save_proxy(moved))
    nowhere = _modified(make_proxy(seeded.pool, 7), id="x")
    refuse(s, ProxyNotFoundError, lambda: s.create_lease(nowhere, "holder", 60))
    unhomed = _modified(make_proxy(seeded.pool, 6), pool_id="{x}")
    refuse(s, ProxyNotFoundError, lambda: s.create_lease(unhomed, "holder", 60))


def test_one_proxy_id_for_two_pools_in_one_bulk_save_is_refused(seeded: Seeded) -> None:
    s = seeded.storage
    other = make_pool(s, "other")
    twin = make_proxy(seeded.pool, 9)
    both = [twin, twin.model_copy(update={"pool_id": other.id})]
    refuse(s, ValueError, lambda: s.add_proxies_bulk(both), match="two pools")
    assert s.list_proxies(str(other.id)) == []
    assert s.add_proxies_bulk([twin, twin]) == 2  # twice into one pool is just a re-save
    assert len(s.list_proxies(str(seeded.pool.id))) == 4
    _assert_clean(s)


def test_a_predicate_that_raises_leases_nothing(seeded: Seeded) -> None:
    def explode(proxy: Proxy) -> bool:
        raise RuntimeError("predicate failed")

    s, m = seeded.storage, seeded.manager
    hostile = ProxyFilters(any_of=[ProxyFilters(country="XX"), ProxyFilters(predicate=explode)])
    for call in (
        lambda: m.acquire("seed", filters=hostile, duration_seconds=60),
        lambda: s.find_available_proxy("seed", hostile, SelectorStrategy.ROUND_ROBIN),
        lambda: ProxyManager(s).acquire_proxy("seed", filters=hostile, duration_seconds=60),
    ):
        refuse(s, RuntimeError, call, match="predicate failed")


def test_current_leases_given_by_the_caller_are_ignored(seeded: Seeded) -> None:
    s = seeded.storage
    for given in (-5, 99):
        s.save_proxy(_modified(seeded.proxies[0], current_leases=given))
        assert s.get_proxy(str(seeded.proxies[0].id)).current_leases == 1  # its real lease
        _assert_clean(s)


@pytest.mark.parametrize(
    "host", ["bücher.example", "xn--bcher-kva.example", "::1", "2001:db8::1", "a" * 253]
)
def test_unusual_but_valid_hosts_round_trip(seeded: Seeded, host: str) -> None:
    fields = make_proxy(seeded.pool, 9).model_dump()
    proxy = Proxy.model_validate({**fields, "host": host, "max_concurrency": 10**12})
    seeded.storage.save_proxy(proxy)
    stored = seeded.storage.get_proxy(str(proxy.id))
    assert str(stored.host) == str(proxy.host) and stored.url == proxy.url
    assert stored.max_concurrency == 10**12
    _assert_clean(seeded.storage)


# ---------------------------------------------------------------------------- health

BAD_HEALTH = [
    pytest.param(dict(latency_ms=math.nan), id="latency-nan"),
    pytest.param(dict(latency_ms=math.inf), id="latency-inf"),
    pytest.param(dict(latency_ms=-1), id="latency-negative"),
    pytest.param(dict(latency_ms=10**13), id="latency-huge"),
    pytest.param(dict(latency_ms="5"), id="latency-str"),
    pytest.param(dict(latency_ms=True), id="latency-bool"),
    pytest.param(dict(status="zombie"), id="status-unknown"),
    pytest.param(dict(protocol="gopher"), id="protocol-unknown"),
    pytest.param(dict(checked_at=None), id="checked-at-None"),
    pytest.param(dict(error_message="\ud800"), id="error-surrogate"),
]


@pytest.mark.parametrize("fields", BAD_HEALTH)
def test_health_results_with_invalid_fields_are_refused(
    seeded: Seeded, fields: dict[str, Any]
) -> None:
    s, proxy = seeded.storage, seeded.proxies[2]
    values: dict[str, Any] = dict(
        proxy_id=proxy.id,
        status=ProxyStatus.ACTIVE,
        latency_ms=5,
        protocol=ProxyProtocol.HTTP,
        attempts=1,
        status_code=None,
        checked_at=datetime.now(timezone.utc),
        error_message=None,
    )
    values.update(fields)
    result = HealthCheckResult.model_construct(**values)
    refuse(s, ValueError, lambda: s.apply_health_check_result(result))
    record = ProxyHealthRecord.model_construct(
        id=uuid.uuid4(),
        proxy_id=proxy.id,
        checked_at=values["checked_at"],
        reachable=True,
        latency_ms=values["latency_ms"],
        protocol=values["protocol"],
        status_before=None,
        status_after=values["status"],
        error=values["error_message"],
    )
    refuse(s, ValueError, lambda: s.save_health_record(record))
    assert [r.latency_ms for r in s.list_health_records(proxy.id)] == [12]


def test_health_arguments_of_the_wrong_type_are_refused(seeded: Seeded) -> None:
    s = seeded.storage
    refuse(s, ValueError, lambda: s.apply_health_check_result(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.save_health_record("record"))  # type: ignore[arg-type]
    limits: tuple[Any, ...] = ("5", None, 1.5)
    for limit in limits:
        refuse(s, ValueError, partial(s.list_health_records, seeded.proxies[2].id, limit))


@pytest.mark.parametrize("latency", [0, 10**12])
def test_latencies_on_the_edges_round_trip(seeded: Seeded, latency: int) -> None:
    s, proxy = seeded.storage, seeded.proxies[1]
    s.apply_health_check_result(
        HealthCheckResult(
            proxy_id=proxy.id,
            status=ProxyStatus.ACTIVE,
            latency_ms=latency,
            protocol=ProxyProtocol.HTTP,
        )
    )
    assert [r.latency_ms for r in s.list_health_records(proxy.id)] == [latency]
    fastest = s.find_available_proxy("seed", selector=SelectorStrategy.LOWEST_LATENCY)
    assert fastest is not None and fastest.id == (
        proxy.id if latency == 0 else seeded.proxies[2].id
    )
    assert len(s.list_proxies(str(seeded.pool.id))) == 3  # every state still decodes
    _assert_clean(s)


# ---------------------------------------------------------------------------- tenants


def _tenant_pairs(prefix: str) -> list[tuple[str, str]]:
    return [
        (prefix, prefix + ":b"),
        (prefix + ":b", prefix),
        (prefix, prefix + "b"),
        (prefix + "*", prefix + "-x"),
        (prefix + "?", prefix + "x"),
        (prefix + "[x]", prefix + "x"),
        (prefix + "\\", prefix + "-y"),
    ]


@pytest.mark.parametrize("pair", range(7))
def test_tenants_never_see_each_other(make_storage: MakeStorage, prefix: str, pair: int) -> None:
    name_a, name_b = _tenant_pairs(prefix)[pair]
    a, b = make_storage(prefix=name_a), make_storage(prefix=name_b)
    pool = ProxyPool(name="same")  # the same pool id and name in both tenants
    proxy = make_proxy(pool, max_concurrency=1)  # and the same proxy id
    for s in (a, b):
        s.save_pool(pool)
        s.save_proxy(proxy)
    short: Any = 0.2  # pharox types duration_seconds as int; fractions are fine here
    a_short = a.create_lease(proxy, "worker", short)
    b_short = b.create_lease(proxy, "worker", short)
    assert a_short.id != b_short.id
    assert a.get_lease(str(b_short.id)) is None and b.get_lease(str(a_short.id)) is None
    assert {lease.id for lease in a.list_leases()} == {a_short.id}
    assert {lease.id for lease in b.list_leases()} == {b_short.id}

    b.release_lease(a_short)  # b knows nothing of a's lease: a keeps it
    held = a.get_lease(str(a_short.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE
    with pytest.raises(LeaseLostError):
        RedisProxyManager(b).renew_lease(a_short, 60)

    time.sleep(0.3)
    assert a.cleanup_expired_leases() == 1
    still = b.get_lease(str(b_short.id))
    assert still is not None and still.status is LeaseStatus.ACTIVE  # b's cleanup is b's
    assert b.get_proxy(str(proxy.id)).current_leases == 1
    assert b.cleanup_expired_leases() == 1

    keys_a, keys_b = set(_contents(a)), set(_contents(b))
    assert keys_a and keys_b and not keys_a & keys_b
    assert all(k.startswith(name_a.encode() + b":{") for k in keys_a)
    assert all(k.startswith(name_b.encode() + b":{") for k in keys_b)
    report_a, report_b = a.audit(), b.audit()
    assert report_a.drift == () and report_b.drift == ()
    assert (report_a.pools, report_a.proxies) == (report_b.pools, report_b.proxies) == (1, 1)
    a.audit(repair=True)  # a repair of one tenant never touches the other
    assert set(_contents(b)) == keys_b

    a.delete_pool(str(pool.id))
    assert b.get_pool(str(pool.id)) == pool and b.get_proxy(str(proxy.id)).id == proxy.id
    assert a.list_pools() == [] and [p.id for p in b.list_pools()] == [pool.id]
    _assert_clean(a)
    _assert_clean(b)


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "{global}", None, 5, b"pharox"])
def test_prefixes_that_would_break_the_key_schema_are_refused(
    make_storage: MakeStorage, bad: Any
) -> None:
    with pytest.raises(ValueError, match="prefix"):
        KeySchema(bad)
    with pytest.raises(ValueError, match="prefix"):
        make_storage(prefix=bad)


# ---------------------------------------------------------------------------- wrong types


def test_arguments_of_the_wrong_type_are_refused(seeded: Seeded) -> None:
    s, m = seeded.storage, seeded.manager
    refuse(s, ValueError, lambda: s.save_pool(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.save_pool("seed"))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.save_proxy(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.add_proxies_bulk([seeded.proxies[0], "proxy"]))  # type: ignore[list-item]
    refuse(s, ValueError, lambda: s.create_lease(None, "c", 60))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.create_lease(str(seeded.proxies[2].id), "c", 60))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.release_lease(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.release_lease(str(seeded.lease.id)))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: m.release_proxy(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.find_available_proxy("seed", selector="fastest"))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: m.acquire("seed", selector=5))  # type: ignore[arg-type]
    held = s.get_lease(str(seeded.lease.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE


@pytest.mark.parametrize("lease", [None, "lease-id"])
def test_renewing_something_that_is_not_a_lease_is_refused(seeded: Seeded, lease: Any) -> None:
    refuse(seeded.storage, ValueError, lambda: seeded.manager.renew_lease(lease, 30))


def test_an_acquire_on_a_pool_deleted_elsewhere_leaves_nothing_behind(
    make_storage: MakeStorage,
) -> None:
    a, b = make_storage(), make_storage()
    pool = make_pool(a, "doomed")
    a.save_proxy(make_proxy(pool, max_concurrency=None))
    manager = RedisProxyManager(b)
    first = manager.acquire("doomed", duration_seconds=60)
    assert first is not None  # b caches the pool id
    a.delete_pool(str(pool.id))
    assert manager.acquire("doomed", duration_seconds=60) is None
    _assert_clean(a)


def test_a_new_consumer_is_not_created_for_an_unencodable_pool_name(seeded: Seeded) -> None:
    refuse(
        seeded.storage,
        ValueError,
        lambda: seeded.manager.acquire("\ud800", consumer_name="brand-new"),
        match="name",
    )


# ---------------------------------------------------------------------------- asyncio


def test_the_async_storage_refuses_the_same_way(
    make_async_storage: Callable[..., Any], loop: Any, seeded: Seeded
) -> None:
    """One core: the asyncio storage refuses what the sync one does, writing nothing."""
    s = seeded.storage
    facade = AsyncFacade(make_async_storage(), loop)
    bad_proxy = _modified(make_proxy(seeded.pool, 9), host="a\nb")
    for expected, call in (
        (
            ValueError,
            lambda: facade.save_pool(ProxyPool.model_construct(id=uuid.uuid4(), name=None)),
        ),
        (ValueError, lambda: facade.find_available_proxy("\ud800")),
        (ValueError, lambda: facade.save_proxy(bad_proxy)),
        (InvalidLeaseError, lambda: facade.create_lease(seeded.proxies[2], "c", math.nan)),
        (ValueError, lambda: facade.find_available_proxy("seed", _deep(1000))),
        (ValueError, lambda: facade.release_lease(None)),
        (ProxyNotFoundError, lambda: facade.get_proxy("../")),
        (PoolNotFoundError, lambda: facade.get_pool("{x}")),
        (PharoxError, lambda: facade.delete_proxy("nope")),
    ):
        refuse(s, expected, call)
    assert facade.audit().drift == ()
    assert len(s.list_leases()) == 2
