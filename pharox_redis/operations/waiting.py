"""Leaving the wait queue of ``acquire(..., wait=)``.

Joining and looking are the acquire itself (``acquire.acquire`` with a
:class:`~pharox_redis.operations.acquire.Waiter`): the walk that finds nothing to lease
enqueues the waiter in the same script, so no slot can be freed unseen in between, and the
same call sent again picks up a lease handed meanwhile (or leases a free proxy, or stays
queued). A slot freed later goes to the oldest waiter it fits, in the script that frees it
(``lua/_wait.lua``), as a lease with a short pickup deadline.
"""

from __future__ import annotations

from typing import Optional
from uuid import UUID

from .. import replies
from .acquire import Acquired, AcquireRequest, took
from .batch import Op, ScriptCall
from .context import Context
from .leases import lease_batch
from .validation import lease_duration_us


def leave(
    ctx: Context, request: AcquireRequest, pool_id: UUID, waiter_id: UUID
) -> Op[Optional[Acquired]]:
    """Leave the pool's wait queue; return the lease handed in the meantime, if one was.

    One round trip (``lua/leave_queue.lua``, pipelined with ``lua/schedule.lua`` when the
    pool's cleanup entry may not cover a picked-up lease). None when nothing was handed.
    """
    duration_us = lease_duration_us(request.duration_seconds)
    args = (str(waiter_id), str(request.lease_id), duration_us)
    call = ScriptCall("leave_queue", ctx.keys.pool(pool_id), args)
    raw = yield lease_batch(ctx, call, pool_id, duration_us, pool_id not in ctx.covered)
    reply = replies.acquire_reply(raw[0])
    if reply.code != "ok":
        return None
    return (yield from took(ctx, request, pool_id, reply, raw))
