"""The acquire behind both managers: find and lease in one round trip.

``lua/acquire.lua`` reclaims the pool's expired leases, walks the selector order, leases the
first match and returns the lease, the proxy (and the pool counters when asked), pipelined with
``lua/schedule.lua`` when the pool's cleanup entry may not cover the lease. Filters with
Python predicates take more: candidates come back in selector order, Python tests them, and
``lua/lease.lua`` leases the chosen ones only if they are still available.

The lease id is chosen before anything is sent, so an acquire re-run after a lost reply
returns the lease the first run made instead of a second one.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, NamedTuple, Optional, Sequence, Union
from uuid import UUID

from pharox import Lease, LeaseStatus, PoolStatsSnapshot, Proxy, ProxyFilters, SelectorStrategy

from .. import codec, replies
from ..filters import compile_filters
from ..misses import AcquireMiss, MissReason
from ..replies import Counters
from .batch import STALE, Op, ScriptCall, Stale, one
from .context import Context
from .leases import lease_batch, lease_proxy, replicated, unschedule
from .proxies import read_proxy
from .resolve import ensure_consumer, in_named_pool
from .selection import MAX_UNDECIDED, SCAN_BUDGET, matching
from .validation import check_text, lease_duration_us

ACQUIRE_RECLAIM = 16  # expired leases of its pool one acquire reclaims on the way
# How long a lease handed to a waiter nobody is seen listening for (it died, its connection
# dropped, or it listens on another cluster node) waits to be picked up (lua/_wait.lua).
PICKUP_SECONDS = 5.0
LEASE_CANDIDATES = 8  # predicate-approved proxies one compare-and-lease call may try


class AcquireRequest(NamedTuple):
    """What one acquire asks for; ``lease_id`` is fixed before the first attempt."""

    pool_name: str
    consumer_name: str
    duration_seconds: float
    filters: Optional[ProxyFilters]
    selector: SelectorStrategy
    lease_id: UUID
    target: Optional[str] = None  # a normalised domain: proxies blocked for it are skipped


class Waiter(NamedTuple):
    """Who joins a pool's wait queue when an acquire finds nothing (``acquire(wait=)``).

    ``order`` is the place it had before ('' to join at the end now); see ``lua/_wait.lua``.
    """

    id: UUID
    channel: str
    wait_us: int
    order: Any = ""
    pickup_us: int = round(PICKUP_SECONDS * 1_000_000)


class Queued(NamedTuple):
    """The acquire joined its pool's wait queue: where, and when to look again at the latest."""

    pool_id: UUID
    order: Any
    until_us: Optional[int]  # to the pool's earliest lease deadline (None: no active lease)


class Acquired(NamedTuple):
    """The outcome of an acquire: the lease and its proxy (or None), and the pool counters.

    ``miss`` says why nothing was leased (see ``misses.py``). ``queued`` is set when the
    acquire joined its pool's wait queue (even when it then leased a candidate a Python
    predicate approved: the caller must leave the queue).
    """

    lease: Optional[Lease]
    proxy: Optional[Proxy]
    counters: Optional[Counters]  # None when the pool does not exist
    miss: Optional[AcquireMiss] = None
    queued: Optional[Queued] = None

    def stats(self, pool_name: str) -> Optional[PoolStatsSnapshot]:
        """Return the pool stats snapshot the reply carried."""
        return None if self.counters is None else codec.stats_snapshot(pool_name, self.counters)


def acquire(
    ctx: Context,
    request: AcquireRequest,
    with_counters: bool = False,
    waiter: Optional[Waiter] = None,
) -> Op[Acquired]:
    """Lease a proxy from a pool by selector and filters; ``lease`` is None when none fits.

    The pool counters come back only ``with_counters`` (they cost Redis work: see
    ``counters()`` in ``lua/_pool.lua``); otherwise ``Acquired.counters`` is None. With a
    ``waiter``, an acquire that finds nothing joins the pool's wait queue in the same call
    (``Acquired.queued``).
    """
    duration_us = lease_duration_us(request.duration_seconds)
    filter_json = compile_filters(request.filters).json
    check_text(request.pool_name, "pool_name")  # refused before a consumer is created
    consumer_id = yield from ensure_consumer(ctx, request.consumer_name)

    def attempt(pool_id: UUID) -> Op[Union[Acquired, Stale]]:
        return _acquire_in(
            ctx,
            pool_id,
            request,
            filter_json,
            consumer_id,
            duration_us,
            with_counters,
            waiter=waiter,
        )

    acquired = yield from in_named_pool(ctx, request.pool_name, attempt)
    unknown = AcquireMiss(request.pool_name, MissReason.UNKNOWN_POOL)
    return acquired or Acquired(None, None, None, unknown)


def _acquire_in(
    ctx: Context,
    pool_id: UUID,
    request: AcquireRequest,
    filter_json: bytes,
    consumer_id: UUID,
    duration_us: int,
    with_counters: bool,
    offset: int = 0,
    waiter: Optional[Waiter] = None,
) -> Op[Union[Acquired, Stale]]:
    """Acquire in a pool, walking its selector order from ``offset`` (rotate goes on there)."""
    pk = ctx.keys.pool(pool_id)
    joining: tuple[Any, ...] = ()
    cover_us = duration_us  # what the cleanup entry must cover: see ARGV[19] of acquire.lua
    if waiter is not None:
        joining = (str(waiter.id), waiter.wait_us, waiter.channel, waiter.order, waiter.pickup_us)
        cover_us = min(duration_us, waiter.pickup_us)
    while True:
        schedule = pool_id not in ctx.covered
        args = (
            request.pool_name,
            request.selector.value,
            filter_json,
            offset,
            SCAN_BUDGET,
            MAX_UNDECIDED,
            str(request.lease_id),
            str(consumer_id),
            duration_us,
            ctx.retention_us,
            ACQUIRE_RECLAIM,
            "1" if schedule else "0",
            "1" if with_counters else "0",
            request.target or "",
            *joining,
        )
        raw = yield lease_batch(ctx, ScriptCall("acquire", pk, args), pool_id, cover_us, schedule)
        reply = replies.acquire_reply(raw[0])
        if reply.code in ("nopool", "stale"):
            if reply.code == "nopool" and schedule:  # no lease was made: drop the hint
                yield one(unschedule(ctx, pool_id))
            return STALE
        if reply.code == "schedule":  # the cleanup entry does not cover this lease
            ctx.covered.discard(pool_id)
            continue
        if reply.code == "build":  # one step of building the selector's set: send again
            continue
        if reply.covered:
            ctx.covered.add(pool_id)
        else:
            ctx.covered.discard(pool_id)
        if reply.code in ("ok", "exists"):
            return (yield from took(ctx, request, pool_id, reply, raw))
        queued = None
        if reply.code == "queued":
            queued = Queued(pool_id, reply.order, reply.until_us)
        taken = yield from lease_candidates(
            ctx, pool_id, request, reply, consumer_id, duration_us, with_counters
        )
        if not isinstance(taken, Missed):
            return (
                taken
                if queued is None or isinstance(taken, Stale)
                else taken._replace(queued=queued)
            )
        if reply.next_offset < 0:
            return Acquired(None, None, taken.counters, _miss(request.pool_name, reply), queued)
        offset = reply.next_offset


def _miss(pool_name: str, reply: replies.AcquireReply) -> AcquireMiss:
    """Return why a walk that ended leased nothing: from the script, or its predicates."""
    if reply.miss is not None:
        return AcquireMiss.from_reply(pool_name, reply.miss)
    return AcquireMiss(pool_name, MissReason.NO_MATCH)  # the predicates approved none


class Missed(NamedTuple):
    """No candidate of a walk was leased: none was approved, or others were faster."""

    counters: Optional[Counters]  # those of the last reply


def took(
    ctx: Context,
    request: AcquireRequest,
    pool_id: UUID,
    reply: replies.AcquireReply,
    raw: Sequence[Any],
) -> Op[Acquired]:
    """Return what a script reply that leased a proxy (``ok`` or ``exists``) made.

    ``raw`` is the round trip's replies, whose ``WAIT`` reply says whether the lease reached
    enough replicas.
    """
    yield from replicated(ctx, raw, pool_id, request.lease_id)
    leased = reply.leased
    if leased is None or not leased.state or not leased.record:
        return Acquired(None, None, reply.counters)  # the proxy was deleted since
    proxy = codec.decode_proxy(
        leased.proxy_id, pool_id, leased.state, leased.lease_count, leased.record
    )
    return _acquired(ctx, request, pool_id, reply.lease, proxy, reply.counters)


def lease_candidates(
    ctx: Context,
    pool_id: UUID,
    request: AcquireRequest,
    reply: replies.AcquireReply,
    consumer_id: UUID,
    duration_us: int,
    with_counters: bool,
) -> Op[Union[Acquired, Stale, Missed]]:
    """Lease the first candidate of a walk that the filters (a predicate) approve.

    The approved ones go to ``lua/lease.lua`` a few at a time, which leases the first that
    is still available; :class:`Missed` when none was.
    """
    counters = reply.counters
    pending = matching(reply.found, pool_id, request.filters)
    while chosen := {str(p.id): p for p in islice(pending, LEASE_CANDIDATES)}:
        taken = yield from lease_proxy(
            ctx,
            pool_id,
            request.pool_name,
            list(chosen),
            request.lease_id,
            consumer_id,
            duration_us,
            move_cursor=request.selector is SelectorStrategy.ROUND_ROBIN,
            with_counters=with_counters,
        )
        if taken.code in ("nopool", "stale"):
            return STALE
        if taken.code in ("ok", "exists"):
            held = codec.decode_lease(request.lease_id, taken.lease, pool_id, request.pool_name)
            got = chosen.get(str(held.proxy_id))
            if got is None:  # a re-sent request found an earlier attempt's lease
                got = yield from read_proxy(ctx, pool_id, held.proxy_id)
            if got is None:
                return Acquired(None, None, taken.counters)
            got.current_leases = taken.lease_count
            return _acquired(ctx, request, pool_id, taken.lease, got, taken.counters)
        counters = taken.counters  # 'unavailable' or 'missing': others were faster
    return Missed(counters)


def _acquired(
    ctx: Context,
    request: AcquireRequest,
    pool_id: UUID,
    raw: Any,
    proxy: Proxy,
    counters: Optional[Counters],
) -> Acquired:
    lease = codec.decode_lease(request.lease_id, raw, pool_id, request.pool_name)
    if lease.status is not LeaseStatus.ACTIVE:
        return Acquired(None, None, counters)  # a retry found the lease already over
    ctx.remember(proxy.id, pool_id)
    return Acquired(lease, proxy, counters)
