"""Finding a proxy: a walk of the pool's available proxies in selector order.

``find.lua`` (and ``acquire.lua``) walk the selector's sorted set and test each candidate
against every filter Lua can decide. Candidates only a Python predicate can decide come back
undecided, in selector order; :func:`matching` decodes them and applies the predicate, for
``find_available_proxy`` here and for the acquire in ``acquire.py``.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, Union
from uuid import UUID

from pharox import Proxy, ProxyFilters, SelectorStrategy

from .. import codec, replies
from ..filters import CompiledFilter, compile_filters
from ..replies import Candidate
from .batch import STALE, Command, Op, ScriptCall, Stale, one
from .context import Context
from .resolve import in_named_pool

SCAN_BUDGET = 1000  # candidates a walk examines per call
MAX_UNDECIDED = 64  # candidates a walk hands to a Python predicate per call


def matching(
    found: Sequence[Candidate], pool_id: UUID, filters: Optional[ProxyFilters]
) -> Iterator[Proxy]:
    """Yield, in selector order, the candidates that match: decided in Lua or by the predicate."""
    for candidate in found:
        proxy = codec.decode_proxy(
            candidate.proxy_id, pool_id, candidate.state, candidate.lease_count, candidate.record
        )
        if candidate.decided or (filters is not None and filters.matches(proxy)):
            yield proxy


def find_available_proxy(
    ctx: Context,
    pool_name: str,
    filters: Optional[ProxyFilters],
    selector: Optional[SelectorStrategy],
) -> Op[Optional[Proxy]]:
    """Return the first available proxy in selector order that matches the filters."""
    compiled = compile_filters(filters)
    strategy = SelectorStrategy(selector or SelectorStrategy.FIRST_AVAILABLE)

    def find(pool_id: UUID) -> Op[Union[Optional[Proxy], Stale]]:
        return _find(ctx, pool_id, pool_name, compiled, filters, strategy)

    return (yield from in_named_pool(ctx, pool_name, find))


def _find(
    ctx: Context,
    pool_id: UUID,
    pool_name: str,
    compiled: CompiledFilter,
    filters: Optional[ProxyFilters],
    strategy: SelectorStrategy,
) -> Op[Union[Optional[Proxy], Stale]]:
    pk = ctx.keys.pool(pool_id)
    offset = 0
    while True:
        args = (pool_name, strategy.value, compiled.json, offset, SCAN_BUDGET, MAX_UNDECIDED)
        (raw,) = yield one(ScriptCall("find", pk, args))
        reply = replies.find_reply(raw)
        if reply.code == "build":  # one step of building the selector's set: send again
            continue
        if reply.code != "ok":
            return STALE
        proxy = next(matching(reply.found, pool_id, filters), None)
        if proxy is not None:
            # find.lua moved the cursor when the first candidate matched; else move it here.
            if strategy is SelectorStrategy.ROUND_ROBIN and not reply.found[0].decided:
                yield one(Command(("SET", pk.cursor, str(proxy.id))))
            ctx.remember(proxy.id, pool_id)
            return proxy
        if reply.next_offset < 0:
            return None
        offset = reply.next_offset
