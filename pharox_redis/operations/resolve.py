"""Names and ids to pools: pool names, proxies, leases and consumers.

Lookups are cached in the :class:`~pharox_redis.operations.context.Context`. A script that
finds a cached answer wrong says so (``stale``, ``missing``, ``nopool``); the operation then
resolves once more with :func:`in_named_pool` or :func:`in_proxy_pool` instead of writing its
own retry loop.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar, Union
from uuid import UUID, uuid4

from ..codec import server_time_us, text
from .batch import Batch, Command, Op, Stale, one
from .context import Context
from .validation import check_text

T = TypeVar("T")
Attempt = Callable[[UUID], Op[Union[T, Stale]]]


def pool_id(ctx: Context, name: str, refresh: bool = False) -> Op[Optional[UUID]]:
    """Resolve a pool name to its id (cached; scripts detect a stale entry).

    The empty name is never cached: scripts take an expected name of '' as "any name",
    so they could not detect that the pool behind it was renamed.
    """
    check_text(name, "pool_name")
    if not refresh and name and name in ctx.pool_ids:
        return ctx.pool_ids[name]
    (raw,) = yield one(Command(("HGET", ctx.keys.globals.pool_names, name)))
    if raw is None:
        ctx.pool_ids.pop(name, None)
        return None
    uid = UUID(text(raw))
    if name:
        ctx.pool_ids[name] = uid
    return uid


def in_named_pool(ctx: Context, name: str, attempt: Attempt[T]) -> Op[Optional[T]]:
    """Run ``attempt`` in the pool called ``name``; None when there is none.

    When the attempt answers :data:`~pharox_redis.operations.batch.STALE` (the cached id no
    longer stands for that name), the name is resolved again and the attempt made once more.
    """
    check_text(name, "pool_name")
    uid = ctx.pool_ids.get(name) if name else None  # a cached name costs no round trip
    refreshed = uid is None
    if refreshed:
        uid = yield from pool_id(ctx, name, refresh=True)
    while uid is not None:
        result = yield from attempt(uid)
        if not isinstance(result, Stale):
            return result
        if refreshed:
            return None
        refreshed = True
        uid = yield from pool_id(ctx, name, refresh=True)
    return None


def in_proxy_pool(
    ctx: Context, proxy_id: UUID, attempt: Attempt[T], hint: Optional[UUID] = None
) -> Op[Optional[T]]:
    """Run ``attempt`` in the pool holding a proxy; None when no pool holds it.

    The pool tried first is ``hint`` (a pool the caller was told) or the cached one. When the
    attempt answers STALE (the proxy is not there), the pools are searched again, and the
    attempt is made once more if the proxy turned up in another pool.
    """
    tried: Optional[UUID] = None
    for refresh in (False, True):
        pool = hint if hint is not None and not refresh else None
        if pool is None:
            pool = yield from locate(ctx, proxy_id, refresh)
        if pool is None or pool == tried:
            return None
        result = yield from attempt(pool)
        if not isinstance(result, Stale):
            return result
        tried = pool
    return None


def pool_list(ctx: Context) -> Op[dict[UUID, str]]:
    """Return every pool's id and name from the registry."""
    (raw,) = yield one(Command(("HGETALL", ctx.keys.globals.pool_ids)))
    return {UUID(text(k)): text(v) for k, v in raw.items()}


def locate(ctx: Context, proxy_id: UUID, refresh: bool = False) -> Op[Optional[UUID]]:
    """Return the id of the pool holding a proxy, or None."""
    cached = ctx.proxy_pools.get(proxy_id)
    if cached is not None and not refresh:
        return cached
    pools = list((yield from pool_list(ctx)))
    if not pools:
        return None
    found = yield Batch(
        [Command(("HEXISTS", ctx.keys.pool(p).state, str(proxy_id))) for p in pools]
    )
    for pool, hit in zip(pools, found, strict=True):
        if hit:
            ctx.remember(proxy_id, pool)
            return pool
    ctx.proxy_pools.pop(proxy_id, None)
    return None


def lease_location(ctx: Context, lease_id: UUID) -> Op[Optional[tuple[UUID, str, Any, int]]]:
    """Return (pool id, pool name, record, server time in us) of a lease's pool, or None."""
    pools = yield from pool_list(ctx)
    if not pools:
        return None
    ids = list(pools)
    *raws, now = yield Batch(
        [Command(("HGET", ctx.keys.pool(p).leases, str(lease_id))) for p in ids]
        + [Command(("TIME",))]
    )
    for pool, raw in zip(ids, raws, strict=True):
        if raw is not None:
            return pool, pools[pool], raw, server_time_us(now)
    return None


def ensure_consumer(ctx: Context, consumer_name: str) -> Op[UUID]:
    """Return the consumer's id, creating it atomically if it is new."""
    check_text(consumer_name, "consumer_name")
    cached = ctx.consumers.get(consumer_name)
    if cached is not None:
        return cached
    key = ctx.keys.globals.consumers
    _, raw = yield Batch(
        (
            Command(("HSETNX", key, consumer_name, str(uuid4()))),
            Command(("HGET", key, consumer_name)),
        ),
        atomic=True,
    )
    consumer_id = UUID(text(raw))
    ctx.consumers[consumer_name] = consumer_id
    return consumer_id


def add_consumer(ctx: Context, consumer_id: UUID, name: str) -> Op[None]:
    """Register a consumer under a given id (overwrites, like pharox's in-memory)."""
    check_text(name, "consumer name")
    if not isinstance(consumer_id, UUID):
        raise ValueError(f"consumer id must be a UUID, got {consumer_id!r}")
    yield one(Command(("HSET", ctx.keys.globals.consumers, name, str(consumer_id))))
    ctx.consumers[name] = consumer_id


def consumer_names(ctx: Context) -> Op[dict[str, str]]:
    """Return every registered consumer's id (as text) and name."""
    (raw,) = yield one(Command(("HGETALL", ctx.keys.globals.consumers)))
    return {text(v): text(k) for k, v in raw.items()}
