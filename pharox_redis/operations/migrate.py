"""Moving what an earlier version wrote to today's key names.

Until 0.1.0 the registries of every prefix lived under the one hash tag ``{global}``, so on a
Redis Cluster every tenant's registries sat on one master; they now live under
``{<prefix>:global}`` (``keys.py``). :func:`migrate` copies each old registry into its new
key, keeping what a newer client may have written there already, then removes the old key.
Each step may be repeated, so a migration cut short is finished by running it again: the
audit reports old keys as drift and ``audit(repair=True)`` (``pharox-redis verify
--repair``) runs it. Run it with the fleet stopped: an old client still writes the old keys.
"""

from __future__ import annotations

from .batch import Batch, Call, Command, Op
from .context import Context


def legacy_keys(ctx: Context) -> Op[list[str]]:
    """Return the registries still under their old names."""
    old = ctx.keys.legacy_globals
    found = yield Batch([Command(("EXISTS", key)) for key in old])
    return [key for key, hit in zip(old, found, strict=True) if hit]


def migrate(ctx: Context) -> Op[list[str]]:
    """Move every old registry to its new name; return the old names moved.

    Hashes (pool ids and names, consumers) are merged field by field with ``HSETNX``: a
    field the new key already has wins. Deadline hints are merged with ``ZADD LT``: the
    earlier wins, so cleanup visits no pool later than either said. Cleanup claims are
    dropped: a claim only delays a visit.
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
    return moved
