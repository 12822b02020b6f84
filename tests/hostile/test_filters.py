"""Filters: coordinates within range, a bounded size, the right types, predicates that raise.

Latitude and longitude in a filter are finite numbers (not bool) within ±90 and ±180, set
together, and a radius must be finite (pydantic already refuses NaN, zero and negatives);
otherwise ValueError. A filter is at most 32 levels deep and 1,024 clauses
(``filters.py``): ValueError before anything is sent; a cycle counts as too deep, so no
RecursionError and no Lua stack overflow. pydantic builds a 1,000-deep tree one level at a
time without complaint, but ``ProxyFilters.model_validate`` of a 1,000-deep dict raises
pydantic's own ValidationError (recursion_depth_exceeded) before the adapter sees it. A
filter predicate that raises: the exception propagates, nothing is leased or written.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pharox import Proxy, ProxyFilters, ProxyManager, SelectorStrategy

from pharox_redis.filters import MAX_FILTER_DEPTH, MAX_FILTER_NODES

from ..helpers.refusals import Seeded, assert_clean, deep, refuse, unvalidated_filters, wide

# ---------------------------------------------------------------------------- coordinates

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
    bad = unvalidated_filters(**fields)
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


# ---------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param(deep(1000), id="all_of-1000-deep"),
        pytest.param(deep(1000, "any_of"), id="any_of-1000-deep"),
        pytest.param(deep(1000, "none_of"), id="none_of-1000-deep"),
        pytest.param(deep(MAX_FILTER_DEPTH + 1), id="one-level-too-deep"),
        pytest.param(deep(1000, leaf=ProxyFilters(predicate=lambda p: True)), id="deep-predicate"),
        pytest.param(wide(10_000), id="10000-alternatives"),
        pytest.param(wide(MAX_FILTER_NODES + 1), id="one-clause-too-many"),
        pytest.param(ProxyFilters(all_of=[wide(600), wide(600)]), id="too-many-clauses-in-total"),
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


def test_a_cyclic_filter_is_refused_as_toodeep(seeded: Seeded) -> None:
    cyclic = ProxyFilters(country="AR")
    cyclic.any_of = [cyclic]
    refuse(seeded.storage, ValueError, lambda: seeded.manager.acquire("seed", filters=cyclic))


def test_filters_at_the_limits_are_evaluated_correctly(seeded: Seeded) -> None:
    s, m = seeded.storage, seeded.manager
    target = seeded.proxies[2]
    s.save_proxy(target.model_copy(update={"country": "AR"}))
    deepest = deep(MAX_FILTER_DEPTH)
    chain = deep(MAX_FILTER_DEPTH - 1)  # one level down, inside the any_of
    others = MAX_FILTER_NODES - 1 - (MAX_FILTER_DEPTH - 1)  # the any_of node, the chain
    widest = ProxyFilters(any_of=[*(ProxyFilters(country=f"C{i}") for i in range(others)), chain])
    for filters in (deepest, widest, deep(MAX_FILTER_DEPTH, "any_of")):
        found = s.find_available_proxy("seed", filters)
        assert found is not None and found.id == target.id
    assert s.find_available_proxy("seed", deep(MAX_FILTER_DEPTH, "none_of")) is not None
    assert s.find_available_proxy("seed", wide(MAX_FILTER_NODES)) is None
    leased = m.acquire("seed", filters=widest, duration_seconds=60)
    assert leased is not None and leased.proxy.id == target.id
    m.release_proxy(leased)
    assert_clean(s)


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
        pytest.param(unvalidated_filters(country=5), id="country-int"),
        pytest.param(unvalidated_filters(asn="13335"), id="asn-str"),
    ],
)
def test_filters_of_the_wrong_type_are_refused(seeded: Seeded, filters: Any) -> None:
    s, m = seeded.storage, seeded.manager
    refuse(s, ValueError, lambda: s.find_available_proxy("seed", filters))
    refuse(s, ValueError, lambda: m.acquire("seed", filters=filters, duration_seconds=60))


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


# ---------------------------------------------------------------------------- predicates
