"""Proxies and health results: ``save_proxy`` re-checks what pharox's models would.

pydantic validates neither attribute assignment nor ``model_construct``, so ``save_proxy``
checks: port an int in 1..65535 (not bool), protocol and status members of their enums,
max_concurrency an int in 1..10**12 or None, host a non-empty str or IP address without
whitespace or control characters, source, country, city and isp str or None, asn int or
None, credentials a ``ProxyCredentials`` of two str, checked_at a datetime, id and pool_id
UUIDs, latitude and longitude finite, within ±90 and ±180 and set together; ValueError
otherwise. A pool that does not exist raises PoolNotFoundError (and ``create_lease`` on its
proxy ProxyNotFoundError, leaving no cleanup hint behind). ``current_leases`` is ignored:
the storage owns the count. A whole bulk save is refused when one proxy is, or when one
proxy id is given for two pools.

pharox's Proxy has no latency field: a latency only arrives with a health result or record,
whose latency_ms is None or a number in 0..10**12 (not NaN, not negative); status and
protocol members of their enums; ValueError otherwise. 10**12 is also the largest
max_concurrency: Lua's cjson writes numbers with 14 significant digits.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any

import pytest
from pharox import (
    HealthCheckResult,
    PoolNotFoundError,
    Proxy,
    ProxyCredentials,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyNotFoundError,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from ..helpers import make_pool, make_proxy
from ..helpers.refusals import Seeded, assert_clean, modified, refuse

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
    fresh = modified(make_proxy(seeded.pool, 9), latitude=lat, longitude=lon)
    refuse(s, ValueError, lambda: s.save_proxy(fresh), match="latitude|longitude")
    existing = modified(seeded.proxies[0], latitude=lat, longitude=lon)
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
    assert_clean(s)


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
    fresh = modified(make_proxy(seeded.pool, 9), **fields)
    refuse(s, ValueError, lambda: s.save_proxy(fresh))
    refuse(s, ValueError, lambda: s.add_proxies_bulk([make_proxy(seeded.pool, 10), fresh]))
    existing = modified(seeded.proxies[0], **fields)
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
    nowhere = modified(make_proxy(seeded.pool, 7), id="x")
    refuse(s, ProxyNotFoundError, lambda: s.create_lease(nowhere, "holder", 60))
    unhomed = modified(make_proxy(seeded.pool, 6), pool_id="{x}")
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
    assert_clean(s)


def test_current_leases_given_by_the_caller_are_ignored(seeded: Seeded) -> None:
    s = seeded.storage
    for given in (-5, 99):
        s.save_proxy(modified(seeded.proxies[0], current_leases=given))
        assert s.get_proxy(str(seeded.proxies[0].id)).current_leases == 1  # its real lease
        assert_clean(s)


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
    assert_clean(seeded.storage)


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
    assert_clean(s)
