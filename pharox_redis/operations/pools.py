"""Pools: save, read, list, delete, and their counters.

A pool lives in two places: the global registry (id <-> name, under ``{<prefix>:global}``)
and its own keys (under ``{p:<pool-uuid>}``), two different cluster slots. ``save_pool`` and
``delete_pool`` write the registry first; the audit finishes either one if a crash cut it in
two.
"""

from __future__ import annotations

from typing import Optional, Union
from uuid import UUID

from pharox import PoolNotFoundError, PoolStatsSnapshot, ProxyPool

from .. import codec, replies
from ..codec import text
from ..outcome import OutcomeStats
from .batch import STALE, Batch, Command, Op, ScriptCall, Stale, one
from .context import Context
from .resolve import in_named_pool, pool_list
from .validation import check_text, parse_uuid


def save_pool(ctx: Context, pool: ProxyPool) -> Op[None]:
    """Insert or update a pool; a rename keeps its proxies."""
    if not isinstance(pool, ProxyPool):
        raise ValueError(f"expected a pharox ProxyPool, got {type(pool).__name__}")
    name = check_text(pool.name, "pool name")
    if not isinstance(pool.id, UUID):
        raise ValueError(f"pool id must be a UUID, got {pool.id!r}")
    if pool.description is not None:
        check_text(pool.description, "pool description")
    g = ctx.keys.globals
    (reply,) = yield one(
        ScriptCall("register_pool", (g.pool_ids, g.pool_names), (str(pool.id), name))
    )
    owner = replies.register_reply(reply)
    if owner is not None:
        raise ValueError(f"pool name {name!r} is already used by pool {owner}")
    yield from _write_meta(ctx, pool)
    ctx.name_pool(name, pool.id)


def ensure_pool(ctx: Context, name: str, description: Optional[str] = None) -> Op[ProxyPool]:
    """Return the pool called ``name``, creating it (with ``description``) when there is none.

    A pool that exists is returned as stored, description included: running the same setup
    twice finds the pool the first run made. Concurrent callers get the same pool.
    """
    pool = ProxyPool(name=check_text(name, "pool name"), description=description)
    g = ctx.keys.globals
    (reply,) = yield one(
        ScriptCall("register_pool", (g.pool_ids, g.pool_names), (str(pool.id), pool.name))
    )
    owner = replies.register_reply(reply)
    if owner is None:
        yield from _write_meta(ctx, pool)
        ctx.name_pool(pool.name, pool.id)
        return pool
    uid = UUID(text(owner))
    meta = ctx.keys.pool(uid).meta
    # The owner's save_pool may not have written its keys yet: write the name it registered
    # (as the audit's repair would), never over a name already there.
    _, (stored, stored_description) = yield Batch(
        (
            Command(("HSETNX", meta, "name", pool.name)),
            Command(("HMGET", meta, "name", "description")),
        )
    )
    ctx.name_pool(pool.name, uid)
    return codec.decode_pool(uid, stored, stored_description)


def _write_meta(ctx: Context, pool: ProxyPool) -> Op[None]:
    """Write a registered pool's name and description to its own keys."""
    meta = ctx.keys.pool(pool.id).meta
    description: Command
    if pool.description is None:
        description = Command(("HDEL", meta, "description"))
    else:
        description = Command(("HSET", meta, "description", pool.description))
    yield Batch((Command(("HSET", meta, "name", pool.name)), description), atomic=True)


def get_pool_by_name(ctx: Context, name: str) -> Op[ProxyPool]:
    """Return a pool by name; PoolNotFoundError when there is none (as ``get_pool``)."""
    check_text(name, "pool_name")

    def read(uid: UUID) -> Op[Union[ProxyPool, Stale]]:
        (values,) = yield one(Command(("HMGET", ctx.keys.pool(uid).meta, "name", "description")))
        if values[0] is None or text(values[0]) != name:
            return STALE
        return codec.decode_pool(uid, values[0], values[1])

    pool = yield from in_named_pool(ctx, name, read)
    if pool is None:
        raise PoolNotFoundError(f"Pool {name!r} not found.")
    return pool


def get_pool(ctx: Context, pool_id: str) -> Op[ProxyPool]:
    """Return a pool by id; PoolNotFoundError when missing or not a UUID."""
    uid = parse_uuid(pool_id)
    if uid is None:
        raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
    (values,) = yield one(Command(("HMGET", ctx.keys.pool(uid).meta, "name", "description")))
    if values[0] is None:
        raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
    return codec.decode_pool(uid, values[0], values[1])


def list_pools(ctx: Context) -> Op[list[ProxyPool]]:
    """Return every pool."""
    ids = list((yield from pool_list(ctx)))
    if not ids:
        return []
    metas = yield Batch(
        [Command(("HMGET", ctx.keys.pool(p).meta, "name", "description")) for p in ids]
    )
    return [
        codec.decode_pool(p, v[0], v[1])
        for p, v in zip(ids, metas, strict=True)
        if v[0] is not None
    ]


def delete_pool(ctx: Context, pool_id: str) -> Op[None]:
    """Delete a pool with its proxies, leases, health history and indexes."""
    uid = parse_uuid(pool_id)
    if uid is None:
        raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
    g = ctx.keys.globals
    (reply,) = yield one(
        ScriptCall(
            "unregister_pool", (g.pool_ids, g.pool_names, g.deadlines, g.claims), (str(uid),)
        )
    )
    if not replies.unregister_reply(reply):
        raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
    yield from drop_pool_keys(ctx, uid)


def drop_pool_keys(ctx: Context, uid: UUID) -> Op[None]:
    """Remove an unregistered pool's keys: meta first, so a crash leaves no live pool."""
    pk = ctx.keys.pool(uid)
    yield one(Command(("UNLINK", pk.meta)))
    cursor = 0
    while True:
        ((cursor, fields),) = yield one(Command(("HSCAN", pk.state, cursor, "COUNT", 1000)))
        if fields:
            yield one(Command(("UNLINK", *(pk.health(text(f)) for f in fields))))
        if int(cursor) == 0:
            break
    yield one(Command(("UNLINK", *pk, pk.legacy_history)))
    ctx.forget_pool(uid)


def get_pool_stats(ctx: Context, pool_name: str) -> Op[Optional[PoolStatsSnapshot]]:
    """Return the pool's counters (``lua/stats.lua``), one round trip; None for an unknown pool.

    The counters are derived atomically (see ``counters()`` in ``lua/_pool.lua``): the work
    grows with the number of leased proxies.
    """
    found = yield from get_outcome_stats(ctx, pool_name)
    return None if found is None else found.stats


def get_outcome_stats(ctx: Context, pool_name: str) -> Op[Optional[OutcomeStats]]:
    """Return the pool's counters with its cool-downs and blocks, read in one atomic call.

    None for an unknown pool. Same work as :func:`get_pool_stats`.
    """

    def read(uid: UUID) -> Op[Union[OutcomeStats, Stale]]:
        (raw,) = yield one(ScriptCall("stats", ctx.keys.pool(uid), (pool_name,)))
        reply = replies.pool_reply(raw)
        if reply.code != "ok" or reply.counters is None:
            return STALE
        stats = codec.stats_snapshot(pool_name, [int(v) for v in reply.counters])
        cooling, blocked = (int(v) for v in reply.fields[:2])
        return OutcomeStats(stats, cooling, blocked)

    return (yield from in_named_pool(ctx, pool_name, read))


def list_pool_stats(ctx: Context) -> Op[list[PoolStatsSnapshot]]:
    """Return every pool's counters by pool name: two round trips, whatever the pool count."""
    found = yield from list_outcome_stats(ctx)
    return [pool.stats for pool in found]


def list_outcome_stats(ctx: Context) -> Op[list[OutcomeStats]]:
    """Return every pool's counters, cool-downs and blocks by pool name: two round trips."""
    pools = yield from pool_list(ctx)
    if not pools:
        return []
    ids = list(pools)
    raws = yield Batch([ScriptCall("stats", ctx.keys.pool(p), ("",)) for p in ids])
    out = []
    for raw in raws:
        reply = replies.pool_reply(raw)
        if reply.code == "ok" and reply.counters is not None and reply.pool_name is not None:
            counters = [int(v) for v in reply.counters]
            cooling, blocked = (int(v) for v in reply.fields[:2])
            stats = codec.stats_snapshot(reply.pool_name, counters)
            out.append(OutcomeStats(stats, cooling, blocked))
    return sorted(out, key=lambda found: found.stats.pool_name)
