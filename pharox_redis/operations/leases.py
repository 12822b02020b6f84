"""Leases: lease a given proxy, release, renew, and read leases back.

``lua/lease.lua`` is a compare-and-lease: it leases a proxy only if it is still available,
on the server clock, with a lease id the client chose, so a retried call returns the lease
the first one made. Every lease-making call is pipelined with ``lua/schedule.lua`` (when the
pool's cleanup entry may not cover it) and, with ``wait_replicas``, a ``WAIT``: still one
round trip.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, NamedTuple, Optional, Sequence, Union
from uuid import UUID

from pharox import (
    Lease,
    LeaseStatus,
    PoolNotFoundError,
    Proxy,
    ProxyNotFoundError,
    ProxyUnavailableError,
)

from .. import codec, replies
from ..codec import text
from ..errors import LeaseLostError, NotReplicatedError
from ..replies import Counters, LeaseReply
from .batch import STALE, Batch, Call, Command, Op, ScriptCall, Stale, one
from .context import Context
from .resolve import ensure_consumer, in_proxy_pool, lease_location, pool_list
from .validation import check_text, lease_duration_us, parse_uuid

log = logging.getLogger("pharox_redis")


class Released(NamedTuple):
    """The outcome of a release.

    Attributes
    ----------
    released_at:
        When the lease ended (server clock), None when there is no such lease.
    counters:
        The pool counters after the call (None when the pool is gone).
    expired:
        True when the lease had reached its deadline before this release (the holder
        overran it, and another worker may have had the proxy meanwhile).

    """

    released_at: Optional[datetime]
    counters: Optional[Counters]
    expired: bool = False


NOTHING_RELEASED = Released(None, None)


def create_lease(
    ctx: Context,
    proxy: Proxy,
    consumer_name: str,
    duration_seconds: Any,
    lease_id: Optional[UUID] = None,
) -> Op[Lease]:
    """Lease a given proxy atomically (see ``lua/lease.lua``)."""
    duration_us = lease_duration_us(duration_seconds)
    if not isinstance(proxy, Proxy):
        raise ValueError(f"expected a pharox Proxy, got {type(proxy).__name__}")
    consumer_id = yield from ensure_consumer(ctx, consumer_name)
    chosen_id = lease_id or codec.new_id()

    def lease(pool_id: UUID) -> Op[Union[Lease, Stale]]:
        reply = yield from lease_proxy(
            ctx, pool_id, "", [str(proxy.id)], chosen_id, consumer_id, duration_us
        )
        if reply.code in ("ok", "exists"):
            ctx.remember(proxy.id, pool_id)
            return codec.decode_lease(chosen_id, reply.lease, pool_id, reply.pool_name or "")
        if reply.code == "unavailable":
            raise ProxyUnavailableError(f"Proxy {proxy.id} is no longer available.")
        return STALE

    if isinstance(proxy.id, UUID) and isinstance(proxy.pool_id, UUID):
        made = yield from in_proxy_pool(ctx, proxy.id, lease, hint=proxy.pool_id)
        if made is not None:
            return made
    raise ProxyNotFoundError(f"Proxy {proxy.id} not found.")


def lease_proxy(
    ctx: Context,
    pool_id: UUID,
    expected_name: str,
    proxy_ids: Sequence[str],
    lease_id: UUID,
    consumer_id: UUID,
    duration_us: int,
    move_cursor: bool = False,
    with_counters: bool = False,
) -> Op[LeaseReply]:
    """Lease the first available of ``proxy_ids`` (``lua/lease.lua``), in one round trip."""
    first, *more = proxy_ids
    args = (
        expected_name,
        first,
        str(lease_id),
        str(consumer_id),
        duration_us,
        ctx.retention_us,
        "1" if move_cursor else "0",
        "1" if with_counters else "0",
        *more,
    )
    raw = yield lease_batch(
        ctx, ScriptCall("lease", ctx.keys.pool(pool_id), args), pool_id, duration_us
    )
    reply = replies.lease_reply(raw[0])
    if reply.code in ("ok", "exists"):
        yield from replicated(ctx, raw, pool_id, lease_id)
    elif reply.code == "nopool":  # no lease was made: drop the hint scheduled with it
        yield one(unschedule(ctx, pool_id))
    return reply


def lease_batch(
    ctx: Context, call: ScriptCall, pool_id: UUID, duration_us: int, schedule_it: bool = True
) -> Batch:
    """Return a lease-making call pipelined with its schedule (and ``WAIT``, if set).

    Still one round trip; ``WAIT`` comes last, so it covers every write before it, and it is
    routed to the pool's node.
    """
    calls: list[Call] = [call]
    if schedule_it:
        calls.append(schedule(ctx, pool_id, duration_us))
    return with_wait(ctx, *calls, pool_id=pool_id)


def with_wait(ctx: Context, *calls: Call, pool_id: UUID) -> Batch:
    """Return the calls as one batch, ending with ``WAIT`` for the replicas when it is set.

    ``WAIT`` comes last, so it covers every write before it, and it is routed to the pool's
    node: on a Redis Cluster it must count the replicas of the master that ran the calls.
    """
    if not ctx.wait_replicas:
        return Batch(calls)
    meta = ctx.keys.pool(pool_id).meta
    wait = Command(("WAIT", ctx.wait_replicas, ctx.wait_timeout_ms), route=meta)
    return Batch((*calls, wait))


def replicated(ctx: Context, replies_: Sequence[Any], pool_id: UUID, lease_id: UUID) -> Op[None]:
    """Check the ``WAIT`` of a lease batch; release the lease and raise when it fell short.

    Raises
    ------
    NotReplicatedError
        When fewer than ``wait_replicas`` replicas acknowledged the lease.

    """
    if not ctx.wait_replicas or int(replies_[-1]) >= ctx.wait_replicas:
        return
    yield one(release_call(ctx, pool_id, lease_id))
    raise NotReplicatedError(lease_id, int(replies_[-1]), ctx.wait_replicas)


def schedule(ctx: Context, pool_id: UUID, duration_us: int) -> ScriptCall:
    """Return the call that makes cleanup visit a pool when a new lease expires."""
    g = ctx.keys.globals
    return ScriptCall("schedule", (g.deadlines, g.claims), (str(pool_id), duration_us))


def unschedule(ctx: Context, pool_id: UUID) -> Command:
    """Return the call that drops the cleanup hint of a pool that turned out not to exist.

    A lease goes out pipelined with its ``schedule`` call, so a lease refused with
    ``nopool`` still left a hint naming a pool that is not there.
    """
    return Command(("ZREM", ctx.keys.globals.deadlines, str(pool_id)))


def release_call(
    ctx: Context, pool_id: UUID, lease_id: UUID, with_counters: bool = False
) -> ScriptCall:
    """Return the call that releases a lease (``lua/release.lua``)."""
    args = (str(lease_id), ctx.retention_us, "1" if with_counters else "0")
    return ScriptCall("release", ctx.keys.pool(pool_id), args)


def release(ctx: Context, lease: Lease, with_counters: bool = False) -> Op[Released]:
    """Release a lease (idempotent); return when it ended (and the counters after it).

    Nothing is known (all None) when the lease's pool is unknown or gone, or no lease has
    such an id. The counters come back only ``with_counters``.
    """
    if not isinstance(lease, Lease):
        raise ValueError(f"expected a pharox Lease, got {type(lease).__name__}")
    if not isinstance(lease.id, UUID):
        return NOTHING_RELEASED
    pool_id = lease.pool_id if isinstance(lease.pool_id, UUID) else None
    if pool_id is None:
        found = yield from lease_location(ctx, lease.id)
        if found is None:
            return NOTHING_RELEASED
        pool_id = found[0]
    call = release_call(ctx, pool_id, lease.id, with_counters)
    raw, *waited = yield with_wait(ctx, call, pool_id=pool_id)
    reply = replies.release_reply(raw)
    if reply.code == "nopool":
        return NOTHING_RELEASED
    if waited and reply.code in ("released", "expired") and int(waited[0]) < ctx.wait_replicas:
        log.warning(
            "The release of lease %s reached %s of the %s replica(s) required in time: a "
            "failover now could bring the lease back until its deadline.",
            lease.id,
            waited[0],
            ctx.wait_replicas,
        )
    ended = None if reply.lease is None else codec.lease_released_at(reply.lease)
    return Released(ended, reply.counters, reply.code == "expired")


def renew(ctx: Context, lease: Lease, duration_seconds: Any) -> Op[Lease]:
    """Extend an active lease to end ``duration_seconds`` from now on the server clock.

    Raises
    ------
    LeaseLostError
        When the lease expired, was released or reclaimed, or its pool is gone.
    InvalidLeaseError
        For a duration that is not a positive number of at most 100 years.

    """
    if not isinstance(lease, Lease):
        raise ValueError(f"expected a pharox Lease, got {type(lease).__name__}")
    duration_us = lease_duration_us(duration_seconds)
    pool_id = lease.pool_id if isinstance(lease.pool_id, UUID) else None
    if pool_id is None:
        found = yield from lease_location(ctx, lease.id)
        if found is None:
            raise LeaseLostError(lease, "no such lease")
        pool_id = found[0]
    args = (str(lease.id), duration_us, ctx.retention_us)
    (raw,) = yield one(ScriptCall("renew", ctx.keys.pool(pool_id), args))
    reply = replies.renew_reply(raw)
    if reply.code == "nopool":
        raise LeaseLostError(lease, "its pool was deleted")
    if reply.code == "missing":
        raise LeaseLostError(lease, "no such lease")
    stored = codec.decode_lease(lease.id, reply.lease, pool_id, lease.pool_name or "")
    if reply.code == "lost":
        lease.status = LeaseStatus.RELEASED
        lease.released_at = stored.released_at
        raise LeaseLostError(lease, "it expired or was released")
    lease.expires_at = stored.expires_at
    return lease


def get_lease(ctx: Context, lease_id: Any) -> Op[Optional[Lease]]:
    """Return a lease by id (active, or released within the retention), else None.

    A lease past its deadline shows as released at its deadline, reclaimed or not.
    """
    uid = parse_uuid(lease_id)
    if uid is None:
        return None
    found = yield from lease_location(ctx, uid)
    if found is None:
        return None
    pool_id, pool_name, raw, now = found
    return codec.decode_lease(uid, raw, pool_id, pool_name, now)


def list_leases(
    ctx: Context,
    consumer_id: Optional[str],
    pool_name: Optional[str] = None,
    active_only: bool = False,
) -> Op[list[Lease]]:
    """Return leases by acquire time, optionally of one consumer, one pool, or active only.

    ``consumer_id`` is a consumer's id or, when it is not a UUID, its name; an unknown one
    has no leases. Without ``active_only`` the released records kept for the retention are
    listed too (pharox's contract). An unknown ``pool_name`` raises PoolNotFoundError.
    """
    wanted = None
    if consumer_id is not None:
        wanted = yield from _consumer(ctx, consumer_id)
        if wanted is None:
            return []
    pools = yield from pool_list(ctx)
    if pool_name is not None:
        check_text(pool_name, "pool_name")
        pools = {uid: name for uid, name in pools.items() if name == pool_name}
        if not pools:
            raise PoolNotFoundError(f"Pool {pool_name!r} not found.")
    ids = list(pools)
    if not ids:
        return []
    *tables, now = yield Batch(
        [Command(("HGETALL", ctx.keys.pool(p).leases)) for p in ids] + [Command(("TIME",))]
    )
    now_us = codec.server_time_us(now)
    out = []
    for pool, table in zip(ids, tables, strict=True):
        for lid, raw in table.items():
            if wanted is None or codec.lease_consumer(raw) == str(wanted):
                lease = codec.decode_lease(lid, raw, pool, pools[pool], now_us)
                if not active_only or lease.status is LeaseStatus.ACTIVE:
                    out.append(lease)
    return sorted(out, key=lambda lease: lease.acquired_at)


def _consumer(ctx: Context, consumer: Any) -> Op[Optional[UUID]]:
    """Return a consumer's id given its id or its name; None when there is no such name."""
    uid = parse_uuid(consumer)
    if uid is not None:
        return uid
    if not isinstance(consumer, str):
        return None
    cached = ctx.consumers.get(consumer)
    if cached is not None:
        return cached
    (raw,) = yield one(Command(("HGET", ctx.keys.globals.consumers, consumer)))
    return None if raw is None else UUID(text(raw))
