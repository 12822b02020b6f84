"""``acquire(..., wait=)``: wait in the pool's queue for a proxy instead of polling.

Written once as a flow (see ``flows.py``) that both managers perform. Besides running
operations it yields the steps ``Subscribe``, ``Listen`` and ``Unsubscribe`` (``flows.py``),
which the managers perform with ``handoff.py`` (a pub/sub connection of their own, never the
storage's held connection).

1. Borrow a subscription to a hand-off channel (one per pub/sub connection, kept by the
   manager for its later waits: after the first, this costs nothing).
2. Acquire, joining the pool's wait queue in the same script when nothing is free
   (``lua/acquire.lua`` with a waiter: no slot can be freed unseen in between). When a
   proxy is free this is all: one round trip, as without ``wait``.
3. Listen on the channel until the hand-off message, the pool's earliest lease deadline,
   :data:`CHECK_SECONDS` or the wait's deadline, whichever comes first. The message brings
   the lease (created by the script that freed the slot) and the proxy: no round trip.
   Otherwise look: the same acquire sent again, keeping the waiter's place, picks up a
   lease handed meanwhile, reclaims expired leases on the way (their slots go to the
   oldest waiters, maybe this one), leases a free proxy that fits, or stays queued.
4. At the deadline, leave the queue (``lua/leave_queue.lua``); a lease handed in the
   meantime is taken, never lost.
5. Give the subscription back; after any error it is closed instead, so that no hand-off
   counts a waiter that is gone as listening (see ``lua/_wait.lua``).

A Python predicate cannot run in Lua: a hand-off matches the filters' Lua part, then the
waiter tests the predicate; a proxy it declines is released (which hands it on to the next
waiter) and the waiter waits on at the place it had. A Redis error while waiting is retried
(with backoff) until the deadline; past it, it is raised.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any, Callable, Optional, TypeVar

from pharox import PoolNotFoundError

from . import codec, misses
from .errors import RedisStorageError
from .flows import (
    Flow,
    Listen,
    Notify,
    Policy,
    Run,
    Sleep,
    Subscribe,
    Unsubscribe,
    acquire_payload,
    now_utc,
    retried,
)
from .leased_proxy import LeasedProxy, local_deadline
from .misses import AcquireMiss, MissReason
from .operations import acquire as acquiring
from .operations import leases, waiting
from .operations.acquire import Acquired, AcquireRequest, Queued, Waiter
from .operations.batch import Op

T = TypeVar("T")
CHECK_SECONDS = 2.0  # longest a waiter listens before it looks at the queue itself
NEXT_DEADLINE_MARGIN = 0.005  # listen this much past the pool's earliest lease deadline
RETRY_SECONDS = 0.05  # first pause after a Redis error while waiting (doubling, to 0.8 s)
LEAVE_GRACE_SECONDS = 1.0  # leaving the queue at the deadline is retried this much longer


def check_wait(wait: Any) -> float:
    """Return ``wait`` as seconds (0 for None); ValueError unless a finite number >= 0."""
    if wait is None:
        return 0.0
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait):
        raise ValueError(f"wait must be a finite number of seconds >= 0, got {wait!r}")
    if wait < 0:
        raise ValueError(f"wait must be >= 0, got {wait!r}")
    return float(wait)


def acquire_waiting(
    policy: Policy, asked: AcquireRequest, wait: float
) -> Flow[Optional[LeasedProxy]]:
    """Lease a proxy, waiting up to ``wait`` seconds in the pool's queue; None at the deadline.

    Raises :class:`pharox.PoolNotFoundError` at once when the pool does not exist.
    """
    sent_at = time.monotonic()
    deadline = sent_at + wait
    started_at = now_utc() if policy.on_acquire else None
    subscription = yield Subscribe(wait)
    try:
        leased, got = yield from _queue(policy, asked, deadline, subscription)
    except BaseException:
        subscription.abandon()  # possibly still queued: nobody may seem to listen for it
        raise
    yield Unsubscribe(subscription)
    # A wait that ends with nothing says why as a plain acquire does (the queue's last miss).
    miss = (
        None
        if leased is not None
        else got.miss or AcquireMiss(asked.pool_name, MissReason.ALL_BUSY)
    )
    misses.noted(miss)
    if policy.observers:
        policy.observe("acquired", asked.pool_name, miss, time.monotonic() - sent_at)
    if started_at is not None:
        yield Notify(policy.on_acquire, acquire_payload(asked, got, started_at))
    return leased


def _attempt(
    policy: Policy, asked: AcquireRequest, deadline: float, waiter: Optional[Waiter] = None
) -> Flow[Acquired]:
    """Acquire (joining the queue with ``waiter``), retrying Redis errors in time."""
    ctx = policy.context
    make = partial(acquiring.acquire, ctx, asked, bool(policy.on_acquire), waiter)
    got: Optional[Acquired] = yield from _in_time(deadline, make, first=True)
    if got is None:  # pragma: no cover - the first call is always made
        raise RedisStorageError("Redis did not answer before the wait's deadline")
    if got.lease is None and got.queued is None and asked.pool_name not in ctx.pool_ids:
        raise PoolNotFoundError(f"Pool '{asked.pool_name}' not found.")  # resolving caches it
    return got


def _in_time(
    deadline: float, make_op: Callable[[], Op[T]], first: bool = False
) -> Flow[Optional[T]]:
    """Run an operation; a Redis error is retried with backoff while the deadline allows.

    Raises the last error once the deadline is reached. Returns None when the deadline had
    passed before a call was made (``first``: the first call is made even then).
    """
    attempt = 0
    while first or time.monotonic() < deadline:
        first = False
        try:
            result: T = yield Run(make_op())
            return result
        except RedisStorageError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            yield Sleep(min(left, RETRY_SECONDS * 2 ** min(attempt, 4)))
            attempt += 1
    return None


def _queue(
    policy: Policy, asked: AcquireRequest, deadline: float, subscription: Any
) -> Flow[tuple[Optional[LeasedProxy], Acquired]]:
    """Join the queue and look again after each listen; steps 3 to 5 of the module's docstring.

    Each look is the joining acquire sent again with the place the waiter has: it picks up a
    lease handed meanwhile, leases a proxy that is free and fits, or stays queued.
    """
    waiter_id = codec.new_id()
    order: Any = ""  # the place in the queue, kept by every later look
    queued: Optional[Queued] = None
    miss: Optional[AcquireMiss] = None  # why the last look found nothing
    while True:
        left = deadline - time.monotonic()
        if left <= 0 and queued is not None:
            return (yield from _leave(policy, asked, queued, waiter_id, miss))
        waiter = Waiter(waiter_id, subscription.channel, max(1, round(left * 1e6)), order)
        sent_at = time.monotonic()
        got = yield from _attempt(policy, asked, deadline, waiter)
        miss = got.miss or miss
        if got.lease is not None and got.proxy is not None:
            if got.queued is not None:  # a predicate approved a free candidate: leave
                yield from _in_time(
                    max(deadline, time.monotonic() + LEAVE_GRACE_SECONDS),
                    partial(waiting.leave, policy.context, asked, got.queued.pool_id, waiter_id),
                    first=True,
                )
            if asked.filters is None or asked.filters.matches(got.proxy):
                return _held(got, asked, sent_at), got
            # Handed on the filters' Lua part, declined by the predicate: give it back (to
            # the next waiter) and wait on at the same place.
            yield from retried(policy, partial(leases.release, policy.context, got.lease))
            asked = asked._replace(lease_id=codec.new_id())
            continue
        if got.queued is None:
            # The lease handed to this waiter expired before it was picked up: join again.
            asked = asked._replace(lease_id=codec.new_id())
            continue
        queued, order = got.queued, got.queued.order
        left = deadline - time.monotonic()
        if left <= 0:
            continue
        span = min(left, CHECK_SECONDS)
        if queued.until_us is not None:
            span = min(span, max(0.0, queued.until_us / 1e6 + NEXT_DEADLINE_MARGIN))
        message = yield Listen(subscription, str(waiter_id), span)
        handed = None
        if message is not None:
            handed = waiting.handed(policy.context, asked, queued.pool_id, message)
        if handed is None:
            continue  # look: pick up, lease, or stay queued
        lease, proxy = handed.lease, handed.proxy
        if lease is None or proxy is None:
            continue
        if asked.filters is None or asked.filters.matches(proxy):
            # The lease was made after the look sent at ``sent_at`` ran: its local deadline
            # counts from then (early, the safe side).
            return _held(handed, asked, sent_at), handed
        yield from retried(policy, partial(leases.release, policy.context, lease))
        asked = asked._replace(lease_id=codec.new_id())


def _leave(
    policy: Policy,
    asked: AcquireRequest,
    queued: Queued,
    waiter_id: Any,
    miss: Optional[AcquireMiss],
) -> Flow[tuple[Optional[LeasedProxy], Acquired]]:
    """Leave the queue at the deadline; a lease handed in the meantime is taken, not lost.

    With nothing taken, the result carries ``miss``: why the waiter's last look found nothing.
    """
    sent_at = time.monotonic()
    grace = sent_at + LEAVE_GRACE_SECONDS  # leaving is retried a little past the deadline
    leave = partial(waiting.leave, policy.context, asked, queued.pool_id, waiter_id)
    handed: Optional[Acquired] = yield from _in_time(grace, leave, first=True)
    if handed is None or handed.lease is None or handed.proxy is None:
        return None, Acquired(None, None, None, miss)
    if asked.filters is not None and not asked.filters.matches(handed.proxy):
        yield from retried(policy, partial(leases.release, policy.context, handed.lease))
        return None, Acquired(None, None, None, miss)
    return _held(handed, asked, sent_at), handed


def _held(got: Acquired, asked: AcquireRequest, sent_at: float) -> Optional[LeasedProxy]:
    if got.lease is None or got.proxy is None:
        return None
    return LeasedProxy(got.lease, got.proxy, local_deadline(sent_at, asked.duration_seconds))
