"""Compile pharox ``ProxyFilters`` into the JSON tree ``lua/find.lua`` evaluates.

A node is an object with optional keys ``eq`` (list of [state key, value] pairs that must
all be equal), ``geo`` ([lat, lon] or [lat, lon, radius_km]), ``p`` (1: a Python predicate
decides), and ``all``/``any``/``none`` (child nodes). Semantics follow
``ProxyFilters.matches``: empty strings are ignored like pharox ignores them.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import msgspec
from pharox import ProxyFilters

from .codec import FILTER_FIELDS

MAX_FILTER_DEPTH = 32
MAX_FILTER_NODES = 1024

_encoder = msgspec.json.Encoder()


class CompiledFilter(msgspec.Struct, frozen=True):
    """A filter ready for Lua: its JSON (``b""`` for none) and whether Python must decide."""

    json: bytes
    needs_python: bool


NO_FILTER = CompiledFilter(b"", False)


def compile_filters(filters: Optional[ProxyFilters]) -> CompiledFilter:
    """Compile filters for ``find.lua``.

    Raises
    ------
    ValueError
        When ``filters`` (or a clause in it) is not a ``ProxyFilters``, the tree is deeper
        than ``MAX_FILTER_DEPTH`` (a cycle counts as too deep), has more than
        ``MAX_FILTER_NODES`` nodes, or holds coordinates that are not finite and in range.

    """
    if filters is None:
        return NO_FILTER
    budget = [MAX_FILTER_NODES]
    node = _node(filters, 1, budget)
    if not node:
        return NO_FILTER
    return CompiledFilter(_encoder.encode(node), filters.requires_python())


def _node(f: ProxyFilters, depth: int, budget: list[int]) -> dict[str, Any]:
    if not isinstance(f, ProxyFilters):
        raise ValueError(f"filters must be pharox ProxyFilters, got {type(f).__name__}")
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"filters may nest at most {MAX_FILTER_DEPTH} levels deep")
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"filters may have at most {MAX_FILTER_NODES} clauses")
    node: dict[str, Any] = {}
    eq = [[key, _text(f, attr)] for attr, key in FILTER_FIELDS.items() if getattr(f, attr)]
    if f.asn is not None:
        if not isinstance(f.asn, int) or isinstance(f.asn, bool):
            raise ValueError(f"filter asn must be an int, got {f.asn!r}")
        eq.append(["asn", str(f.asn)])
    if eq:
        node["eq"] = eq
    if f.latitude is not None and f.longitude is not None:
        geo = [_finite(f.latitude, "latitude", 90), _finite(f.longitude, "longitude", 180)]
        if f.radius_km is not None:
            geo.append(_finite(f.radius_km, "radius_km", math.inf))
        node["geo"] = geo
    if f.predicate is not None:
        node["p"] = 1
    for key, children in (("all", f.all_of), ("any", f.any_of), ("none", f.none_of)):
        if children:
            node[key] = [_node(child, depth + 1, budget) for child in children]
    return node


def _text(f: ProxyFilters, attr: str) -> str:
    value = getattr(f, attr)
    if not isinstance(value, str):
        raise ValueError(f"filter {attr} must be a str, got {value!r}")
    return value


def _finite(value: float, name: str, limit: float) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or abs(value) > limit:
        raise ValueError(f"filter {name} must be finite and within ±{limit:g}, got {value!r}")
    return float(value)
