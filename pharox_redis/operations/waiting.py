"""Leaving the wait queue of ``acquire(..., wait=)``.

Joining and looking are the acquire itself (``acquire.acquire`` with a
:class:`~pharox_redis.operations.acquire.Waiter`): the walk that finds nothing to lease
enqueues the waiter in the same script, so no slot can be freed unseen in between, and the
same call sent again picks up a lease handed meanwhile (or leases a free proxy, or stays
queued). A slot freed later goes to the oldest waiter it fits, in the script that frees it
(``lua/_wait.lua``), and the lease comes to the waiter in the hand-off message (:func:`handed`).
"""

from __future__ import annotations

from typing import Optional
from uuid import UUID

from pharox import LeaseStatus

from .. import codec, replies
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


def netstrings(payload: bytes) -> list[bytes]:
    """Split ``<length>:<bytes>`` fields (a hand-off message, see ``lua/_wait.lua``)."""
    fields, at = [], 0
    while at < len(payload):
        colon = payload.index(b":", at)
        size = int(payload[at:colon])
        fields.append(payload[colon + 1 : colon + 1 + size])
        at = colon + 1 + size
    return fields


def handed(
    ctx: Context, request: AcquireRequest, pool_id: UUID, message: bytes
) -> Optional[Acquired]:
    """Return the lease a hand-off message brought, or None when it must be picked up.

    A message brings a lease that runs its full duration when the script saw the waiter
    listening (``handoff_message`` in ``lua/_wait.lua``). A lease with only a pickup
    deadline, or any lease when new leases must reach replicas first (``wait_replicas``),
    is picked up by the caller's next look instead. No round trip here.
    """
    _, lease_id, full, rec, proxy_id, state, count, record = netstrings(message)
    if full != b"1" or ctx.wait_replicas or lease_id != str(request.lease_id).encode():
        return None  # to pick up, or meant for a lease this waiter gave back since
    lease = codec.decode_lease(request.lease_id, rec, pool_id, request.pool_name)
    if lease.status is not LeaseStatus.ACTIVE:
        return None
    proxy = codec.decode_proxy(proxy_id, pool_id, state, int(count), record)
    ctx.remember(proxy.id, pool_id)
    return Acquired(lease, proxy, None)
