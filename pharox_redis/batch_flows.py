"""What both managers do for rotate and batch leasing, as generators of steps (see flows.py).

* :func:`rotate`: release the lease held and acquire the next one in its pool, in one round
  trip (``lua/rotate.lua``). The release is reported as :func:`flows.release` reports it
  (a lease that had reached its deadline is marked lost and logged), the acquire as
  :func:`flows.acquire` (callbacks, local deadline, lease id on errors).
* :func:`acquire_many` and :func:`release_many`: k leases, or many releases, in one round
  trip; one acquire or release event per lease.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence, Union
from uuid import uuid4

from pharox import Lease, ProxyFilters, SelectorStrategy

from .errors import RedisStorageError
from .flows import (
    Flow,
    Notify,
    Policy,
    acquire_payload,
    now_utc,
    released,
    request,
    retried,
    unwrap_lease,
)
from .leased_proxy import LeasedProxy, local_deadline
from .operations import many
from .operations import rotate as rotating
from .operations.acquire import Acquired, AcquireRequest
from .operations.leases import Released
from .operations.many import MAX_BATCH, ManyRequest
from .operations.rotate import Rotated
from .outcome import Outcome, check_outcome


def rotate(
    policy: Policy,
    lease: Union[Lease, LeasedProxy],
    asked: AcquireRequest,
    outcome: Optional[Outcome] = None,
) -> Flow[Optional[LeasedProxy]]:
    """Release ``lease`` and lease the next proxy of its pool (one round trip).

    The new lease's local deadline counts from before the first attempt was sent. A
    :class:`~pharox_redis.errors.RedisStorageError` carries the new lease's id. The
    ``outcome`` (by default the one a LeasedProxy was given with ``report``) is applied
    with the release, before the next proxy is chosen.
    """
    held = unwrap_lease(lease)
    outcome = check_outcome(outcome)
    if outcome is None and isinstance(lease, LeasedProxy):
        outcome = lease.outcome
    started_at = now_utc() if policy.on_acquire else None
    sent_at = time.monotonic()
    try:
        done: Rotated = yield from retried(
            policy,
            lambda: rotating.rotate(
                policy.context,
                held,
                asked,
                bool(policy.on_acquire or policy.on_release),
                outcome,
            ),
        )
    except RedisStorageError as exc:
        exc.lease_id = asked.lease_id
        raise
    yield from released(policy, lease, done.released)
    asked = asked._replace(pool_name=done.pool_name or asked.pool_name)
    if started_at is not None:
        yield Notify(policy.on_acquire, acquire_payload(asked, done.acquired, started_at))
    got = done.acquired
    if got.lease is None or got.proxy is None:
        return None
    return LeasedProxy(got.lease, got.proxy, local_deadline(sent_at, asked.duration_seconds))


def rotate_request(
    lease: Union[Lease, LeasedProxy],
    consumer_name: Optional[str],
    duration_seconds: float,
    filters: Optional[ProxyFilters],
    selector: Optional[SelectorStrategy],
    target: Optional[str] = None,
) -> AcquireRequest:
    """Return the acquire request of a rotate (the pool is the held lease's)."""
    held = unwrap_lease(lease)
    if not isinstance(held, Lease):
        raise ValueError(f"expected a pharox Lease or a LeasedProxy, got {type(lease).__name__}")
    return request(held.pool_name or "", consumer_name, duration_seconds, filters, selector, target)


def many_request(
    pool_name: str,
    k: int,
    consumer_name: Optional[str],
    duration_seconds: float,
    filters: Optional[ProxyFilters],
    selector: Optional[SelectorStrategy],
    all_or_nothing: bool,
    distinct: bool,
) -> ManyRequest:
    """Return the batch request for these arguments, with k fresh lease ids."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_BATCH:
        raise ValueError(f"k must be an int between 1 and {MAX_BATCH}, got {k!r}")
    one = request(pool_name, consumer_name, duration_seconds, filters, selector)
    return ManyRequest(
        pool_name=one.pool_name,
        consumer_name=one.consumer_name,
        duration_seconds=one.duration_seconds,
        filters=one.filters,
        selector=one.selector,
        lease_ids=(one.lease_id, *(uuid4() for _ in range(k - 1))),
        all_or_nothing=bool(all_or_nothing),
        distinct=bool(distinct),
    )


def acquire_many(policy: Policy, asked: ManyRequest) -> Flow[list[LeasedProxy]]:
    """Lease up to k proxies (one round trip) and notify the acquire callbacks.

    One acquire event per lease made (one with no lease when none was), each with the pool
    stats after the call. A :class:`~pharox_redis.errors.RedisStorageError` carries the
    first lease id.
    """
    started_at = now_utc() if policy.on_acquire else None
    sent_at = time.monotonic()
    try:
        got: many.AcquiredMany = yield from retried(
            policy, lambda: many.acquire_many(policy.context, asked)
        )
    except RedisStorageError as exc:
        exc.lease_id = asked.lease_ids[0]
        raise
    if started_at is not None:
        one = AcquireRequest(
            asked.pool_name,
            asked.consumer_name,
            asked.duration_seconds,
            asked.filters,
            asked.selector,
            asked.lease_ids[0],
        )
        events = [Acquired(lease, proxy, got.counters) for lease, proxy in got.leases]
        for event in events or [Acquired(None, None, got.counters)]:
            yield Notify(policy.on_acquire, acquire_payload(one, event, started_at))
    deadline = local_deadline(sent_at, asked.duration_seconds)
    return [LeasedProxy(lease, proxy, deadline) for lease, proxy in got.leases]


def release_many(
    policy: Policy, leases: Sequence[Union[Lease, LeasedProxy]]
) -> Flow[list[Released]]:
    """Release leases (idempotent) in one round trip; each is then handled as release does."""
    held = [unwrap_lease(lease) for lease in leases]
    if not held:
        return []
    outcomes = [lease.outcome if isinstance(lease, LeasedProxy) else None for lease in leases]
    if not any(outcomes):
        outcomes = []
    done: list[Released] = yield from retried(
        policy, lambda: many.release_many(policy.context, held, outcomes)
    )
    for lease, outcome in zip(leases, done, strict=True):
        yield from released(policy, lease, outcome)
    return done
