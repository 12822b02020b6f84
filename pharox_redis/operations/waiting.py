"""The wait queue of ``acquire(..., wait=)``: look whether a lease was handed, leave.

Joining is part of the acquire (``acquire.acquire`` with a
:class:`~pharox_redis.operations.acquire.Waiter`): the walk that finds nothing to lease
enqueues the waiter in the same script, so no slot can be freed unseen in between. A slot
freed later goes to the oldest waiter it fits, in the script that frees it (``lua/_wait.lua``),
as a lease with a short pickup deadline; :func:`look` (``lua/wait.lua``) picks it up and
extends it to its full duration.
"""

from __future__ import annotations

from typing import Union
from uuid import UUID

from .. import replies
from .acquire import ACQUIRE_RECLAIM, Acquired, AcquireRequest, Queued, took
from .batch import Op, ScriptCall
from .context import Context
from .leases import lease_batch
from .validation import lease_duration_us


class Gone:
    """Marker: the waiter is not in the queue (it left, its deadline passed, or Redis lost it)."""


GONE = Gone()


def look(
    ctx: Context, request: AcquireRequest, pool_id: UUID, waiter_id: UUID, leave: bool = False
) -> Op[Union[Acquired, Queued, Gone]]:
    """Pick up a lease handed to the waiter, or say it is still queued; ``leave`` the queue.

    One round trip (``lua/wait.lua``, pipelined with ``lua/schedule.lua`` when the pool's
    cleanup entry may not cover a picked-up lease). On the way it reclaims a bounded batch
    of the pool's expired leases, whose slots go to the oldest waiters.
    """
    duration_us = lease_duration_us(request.duration_seconds)
    args = (
        "leave" if leave else "check",
        str(waiter_id),
        str(request.lease_id),
        duration_us,
        ctx.retention_us,
        ACQUIRE_RECLAIM,
    )
    schedule = pool_id not in ctx.covered
    call = ScriptCall("wait", ctx.keys.pool(pool_id), args)
    raw = yield lease_batch(ctx, call, pool_id, duration_us, schedule)
    reply = replies.acquire_reply(raw[0])
    if reply.code == "ok":
        return (yield from took(ctx, request, pool_id, reply, raw))
    if reply.code == "queued":
        return Queued(pool_id, reply.order, reply.until_us)
    return GONE
