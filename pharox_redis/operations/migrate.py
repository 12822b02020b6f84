"""Moving what an earlier version wrote to today's layout.

Until 0.1.0 the registries of every prefix lived under the one hash tag ``{global}``, so on a
Redis Cluster every tenant's registries sat on one master; they now live under
``{<prefix>:global}`` (``keys.py``). A 0.1.0 pool also kept its released lease records in a
zset of their own (``history``), five counters in its ``meta`` hash, and all four
availability sets; now released records share the ``deadlines`` time line (scored at their
purge time + 0.5), the counters are derived (only ``active`` is kept) and a set is kept only
for the selectors a pool is asked for (``lua/_pool.lua``).

Scripts of this version work on a 0.1.0 pool as it is: a set is rebuilt the first time a
selector asks for it, and the old counters are no longer read. What is left over (the old
history zset with its records never purged, the counter fields, sets no longer kept) is
what :func:`migrate` moves or removes. Each step may be repeated, so a migration cut short
is finished by running it again: the audit reports old keys as drift and
``audit(repair=True)`` (``pharox-redis verify --repair``) runs it. Run it with the fleet
stopped: an old client still writes the old layout.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ..codec import text
from ..keys import PoolKeys
from .batch import Batch, Call, Command, Op
from .context import Context

LEGACY_COUNTERS = ("total", "available", "leased", "leases")
SET_FIELDS = ("first", "least", "rr", "latency")
HISTORY_CHUNK = 1000  # released records moved per round trip


def legacy_keys(ctx: Context) -> Op[list[str]]:
    """Return the keys still in their 0.1.0 layout (registries, and pools' keys)."""
    old = ctx.keys.legacy_globals
    *found, ids, old_ids = yield Batch(
        [Command(("EXISTS", key)) for key in old]
        + [Command(("HKEYS", ctx.keys.globals.pool_ids)), Command(("HKEYS", old.pool_ids))]
    )
    out = [key for key, hit in zip(old, found, strict=True) if hit]
    pools = sorted({UUID(text(p)) for p in [*ids, *old_ids]})
    if pools:
        checks = yield Batch(
            [Command(("EXISTS", ctx.keys.pool(p).legacy_history)) for p in pools]
            + [Command(("HEXISTS", ctx.keys.pool(p).meta, "total")) for p in pools]
        )
        for i, pool in enumerate(pools):
            if checks[i] or checks[len(pools) + i]:
                out.append(ctx.keys.pool(pool).meta)
    return out


def migrate(ctx: Context) -> Op[list[str]]:
    """Move everything still in the 0.1.0 layout to today's; return the old keys found.

    Hashes (pool ids and names, consumers) are merged field by field with ``HSETNX``: a
    field the new key already has wins. Deadline hints are merged with ``ZADD LT``: the
    earlier wins, so cleanup visits no pool later than either said. Cleanup claims are
    dropped: a claim only delays a visit. Then each 0.1.0 pool is migrated
    (:func:`migrate_pool`).
    """
    old, new = ctx.keys.legacy_globals, ctx.keys.globals
    moved = yield from legacy_keys(ctx)
    if not moved:
        return []
    hashes = [(old.pool_ids, new.pool_ids), (old.pool_names, new.pool_names)]
    hashes.append((old.consumers, new.consumers))
    *tables, hints = yield Batch(
        [Command(("HGETALL", source)) for source, _ in hashes]
        + [Command(("ZRANGE", old.deadlines, 0, -1, "WITHSCORES"))]
    )
    writes: list[Call] = []
    for (_, target), table in zip(hashes, tables, strict=True):
        writes += [Command(("HSETNX", target, field, value)) for field, value in table.items()]
    for pool, score in hints:  # redis-py pairs a WITHSCORES reply: (member, score)
        writes.append(Command(("ZADD", new.deadlines, "LT", repr(float(score)), pool)))
    if writes:
        yield Batch(writes)
    yield Batch([Command(("UNLINK", key)) for key in old])
    for key in moved:
        if key.endswith(":meta"):
            pool_id = key[key.index("{p:") + 3 : key.index("}")]
            yield from migrate_pool(ctx, ctx.keys.pool(pool_id))
    return moved


def migrate_pool(ctx: Context, pk: PoolKeys) -> Op[None]:
    """Move a 0.1.0 pool's released records onto its time line and drop what is unused.

    Each record keeps its purge time (scored + 0.5, as ``lua/_pool.lua`` marks released
    records). The old counters go, and so do availability sets the pool does not keep (they
    are rebuilt when a selector asks for them).
    """
    while True:
        (chunk,) = yield Batch(
            (Command(("ZRANGE", pk.legacy_history, 0, HISTORY_CHUNK - 1, "WITHSCORES")),)
        )
        if not chunk:
            break
        members: list[Any] = []
        for lease_id, score in chunk:
            members += [f"{int(score)}.5", lease_id]
        yield Batch(
            (
                Command(("ZADD", pk.deadlines, *members)),
                Command(("ZREM", pk.legacy_history, *(lease_id for lease_id, _ in chunk))),
            ),
            atomic=True,
        )
    flags, *_ = yield Batch(
        (
            Command(("HMGET", pk.meta, *(f"set:{s}" for s in SET_FIELDS))),
            Command(("HDEL", pk.meta, *LEGACY_COUNTERS)),
            Command(("UNLINK", pk.legacy_history)),
        )
    )
    unkept = [getattr(pk, s) for s, flag in zip(SET_FIELDS, flags, strict=True) if flag is None]
    if unkept:
        yield Batch((Command(("UNLINK", *unkept)),))
