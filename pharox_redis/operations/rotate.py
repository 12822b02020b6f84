"""Rotate: release a lease and acquire the next one in its pool, in one round trip.

``lua/rotate.lua`` does the release of ``lua/release.lua`` and then the acquire of
``lua/acquire.lua`` in one call. What comes after is the acquire's: candidates a Python
predicate must decide come back in selector order, the first approved ones are leased with
``lua/lease.lua``, and when others were faster the walk goes on with ``acquire.lua`` where
rotate's stopped. The new lease's id is chosen before anything is sent and the release is
idempotent, so a rotate re-run after a lost reply returns the lease the first run made and
releases nothing twice.
"""

from __future__ import annotations

from typing import NamedTuple, Optional
from uuid import UUID

from pharox import Lease

from .. import codec, replies
from ..filters import compile_filters
from ..outcome import Outcome
from . import acquire as acquiring
from .acquire import ACQUIRE_RECLAIM, Acquired, AcquireRequest
from .batch import Op, ScriptCall, Stale, one
from .context import Context
from .leases import NOTHING_RELEASED, Released, lease_batch, outcome_args, unschedule
from .resolve import ensure_consumer, lease_location
from .selection import MAX_UNDECIDED, SCAN_BUDGET
from .validation import lease_duration_us

NOTHING = Acquired(None, None, None)


class Rotated(NamedTuple):
    """The outcome of a rotate.

    Attributes
    ----------
    released:
        The release of the lease that was held, as :func:`~.leases.release` reports it
        (``expired`` when it had reached its deadline before the rotate).
    acquired:
        The acquire that followed (``lease`` None when no proxy was free).
    pool_name:
        The pool's name, as the server answered it ('' when the pool is gone).

    """

    released: Released
    acquired: Acquired
    pool_name: str


def rotate(
    ctx: Context,
    held: Lease,
    request: AcquireRequest,
    with_counters: bool = False,
    outcome: Optional[Outcome] = None,
) -> Op[Rotated]:
    """Release ``held`` and lease the next proxy of its pool by selector and filters.

    ``request.pool_name`` is ignored: the pool is the held lease's. When no pool holds the
    lease any more, nothing is released and nothing acquired. The pool counters come back
    only ``with_counters``. The ``outcome`` of the held lease is applied with its release,
    before the walk (as ``release`` applies one).
    """
    if not isinstance(held, Lease):
        raise ValueError(f"expected a pharox Lease, got {type(held).__name__}")
    duration_us = lease_duration_us(request.duration_seconds)
    filter_json = compile_filters(request.filters).json
    consumer_id = yield from ensure_consumer(ctx, request.consumer_name)
    if not isinstance(held.id, UUID):
        return Rotated(NOTHING_RELEASED, NOTHING, "")
    pool_id = held.pool_id if isinstance(held.pool_id, UUID) else None
    if pool_id is None:
        found = yield from lease_location(ctx, held.id)
        if found is None:
            return Rotated(NOTHING_RELEASED, NOTHING, "")
        pool_id = found[0]
    pk = ctx.keys.pool(pool_id)
    while True:
        schedule = pool_id not in ctx.covered
        args = (
            "",
            request.selector.value,
            filter_json,
            SCAN_BUDGET,
            MAX_UNDECIDED,
            str(held.id),
            str(request.lease_id),
            str(consumer_id),
            duration_us,
            ctx.retention_us,
            ACQUIRE_RECLAIM,
            "1" if schedule else "0",
            "1" if with_counters else "0",
            request.target or "",
            *(() if outcome is None else outcome_args(ctx, outcome)),
        )
        raw = yield lease_batch(ctx, ScriptCall("rotate", pk, args), pool_id, duration_us, schedule)
        released, reply = replies.rotate_reply(raw[0])
        if reply.code == "schedule":  # nothing was done: send it with schedule.lua
            ctx.covered.discard(pool_id)
            continue
        if reply.code == "build":  # nothing was done: one step of building the set
            continue
        if released is None:  # 'nopool' (the pool was deleted): the lease went with it
            if schedule:
                yield one(unschedule(ctx, pool_id))
            return Rotated(NOTHING_RELEASED, NOTHING, "")
        break
    if reply.covered:
        ctx.covered.add(pool_id)
    else:
        ctx.covered.discard(pool_id)
    ended = None if released.lease is None else codec.lease_released_at(released.lease)
    done = Released(ended, reply.counters, released.code == "expired")
    name = reply.pool_name or ""
    asked = request._replace(pool_name=name)
    if reply.code in ("ok", "exists"):
        return Rotated(done, (yield from acquiring.took(ctx, asked, pool_id, reply, raw)), name)
    taken = yield from acquiring.lease_candidates(
        ctx, pool_id, asked, reply, consumer_id, duration_us, with_counters
    )
    if isinstance(taken, Stale):  # the pool was deleted meanwhile
        return Rotated(done, NOTHING, name)
    if isinstance(taken, acquiring.Missed):
        taken = Acquired(None, None, taken.counters)
    if taken.lease is None and reply.next_offset >= 0:  # others were faster: walk on
        walked = yield from acquiring._acquire_in(
            ctx,
            pool_id,
            asked,
            filter_json,
            consumer_id,
            duration_us,
            with_counters,
            reply.next_offset,
        )
        taken = NOTHING if isinstance(walked, Stale) else walked
    return Rotated(done, taken, name)
