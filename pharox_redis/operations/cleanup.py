"""Cleanup: reclaim the expired leases of every pool.

The global index (``{<prefix>:global}:deadlines``) holds one entry per pool with leases:
the earliest deadline it may have. ``lua/due.lua`` hands out the pools whose entry has
come, claiming them for a while; each is reclaimed in bounded batches (``lua/reclaim.lua``),
and its entry is put back at its next deadline by the following ``due.lua`` call.
"""

from __future__ import annotations

from typing import Any

from .. import replies
from .batch import Batch, Op, ScriptCall, one
from .context import Context

DUE_BATCH = 256  # pools cleanup takes from the global deadline index per round trip
CLAIM_GRACE_US = 30_000_000  # cleanup visits a pool again this late if its cleaner died
RECLAIM_BATCH = 256  # expired leases reclaim.lua releases per call


def cleanup_expired_leases(ctx: Context) -> Op[int]:
    """Reclaim every expired lease; costs one round trip when none has expired."""
    g = ctx.keys.globals
    reclaimed = 0
    put_back: list[Any] = []
    while True:
        args = (DUE_BATCH, CLAIM_GRACE_US, *put_back)
        (raw,) = yield one(ScriptCall("due", (g.deadlines, g.claims), args))
        claims = replies.due_reply(raw)
        if not claims:
            return reclaimed
        raws = yield Batch([reclaim(ctx, pool) for pool, _ in claims])
        put_back = []
        for (pool, claim), first in zip(claims, raws, strict=True):
            reply = replies.reclaim_reply(first)
            reclaimed += reply.reclaimed
            while reply.more:
                (again,) = yield one(reclaim(ctx, pool))
                reply = replies.reclaim_reply(again)
                reclaimed += reply.reclaimed
            put_back += [pool, claim, reply.next_deadline]


def reclaim(ctx: Context, pool_id: str) -> ScriptCall:
    """Return the call that reclaims a batch of a pool's expired leases."""
    return ScriptCall("reclaim", ctx.keys.pool(pool_id), (ctx.retention_us, RECLAIM_BATCH))
