"""The sans-I/O operations behind both managers: acquire, release and renew.

``acquire`` is one round trip: ``lua/acquire.lua`` reclaims the pool's expired leases, walks
the selector order, leases the first match and returns the lease, the proxy and the pool
counters, pipelined with ``lua/schedule.lua`` for the global cleanup index. Filters with
Python predicates take more: candidates come back in selector order, Python tests them, and
``lua/lease.lua`` leases the chosen one only if it is still available (compare-and-lease).

The lease id is chosen here, before anything is sent, so an operation re-run after a lost
reply returns the lease the first run made instead of a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Sequence
from uuid import UUID

from pharox import (
    Lease,
    LeaseStatus,
    PoolStatsSnapshot,
    Proxy,
    ProxyFilters,
    SelectorStrategy,
)

from . import codec
from .codec import text
from .core import (
    MAX_UNDECIDED,
    SCAN_BUDGET,
    STALE,
    Op,
    ScriptCall,
    Stale,
    StorageCore,
    check_text,
    lease_duration_us,
    one,
    stats_snapshot,
)
from .errors import LeaseLostError
from .filters import compile_filters
from .leased import LeasedProxy

ACQUIRE_RECLAIM = 16  # expired leases of its pool one acquire reclaims on the way
LEASE_CANDIDATES = 8  # predicate-approved proxies one compare-and-lease call may try


@dataclass(frozen=True, slots=True)
class AcquireRequest:
    """What one acquire asks for; ``lease_id`` is fixed before the first attempt."""

    pool_name: str
    consumer_name: str
    duration_seconds: float
    filters: Optional[ProxyFilters]
    selector: SelectorStrategy
    lease_id: UUID


@dataclass(frozen=True, slots=True)
class Acquired:
    """The outcome of an acquire: the lease (or None) and the pool counters after it."""

    leased: Optional[LeasedProxy]
    counters: Optional[Sequence[Any]]  # None when the pool does not exist

    def stats(self, pool_name: str) -> Optional[PoolStatsSnapshot]:
        """Return the pool stats snapshot the reply carried."""
        return None if self.counters is None else stats_snapshot(pool_name, self.counters)


@dataclass(frozen=True, slots=True)
class Released:
    """The outcome of a release: when it happened and the pool counters after it."""

    released_at: Optional[datetime]
    counters: Optional[Sequence[Any]]


def acquire(core: StorageCore, request: AcquireRequest) -> Op[Acquired]:
    """Lease a proxy from a pool by selector and filters; ``leased`` is None when none fits."""
    duration_us = lease_duration_us(request.duration_seconds)
    compiled = compile_filters(request.filters)
    check_text(request.pool_name, "pool_name")
    consumer_id = yield from core.ensure_consumer(request.consumer_name)
    for refresh in (False, True):
        pool_id = yield from core.pool_id(request.pool_name, refresh)
        if pool_id is None:
            return Acquired(None, None)
        outcome = yield from _acquire_in(
            core, pool_id, request, compiled.json, consumer_id, duration_us
        )
        if not isinstance(outcome, Stale):
            return outcome
    return Acquired(None, None)


def _acquire_in(
    core: StorageCore,
    pool_id: UUID,
    request: AcquireRequest,
    filter_json: bytes,
    consumer_id: UUID,
    duration_us: int,
) -> Op[Acquired | Stale]:
    pk = core.keys.pool(pool_id)
    name = request.pool_name
    offset = 0
    while True:
        schedule = pool_id not in core.covered
        replies = yield core.lease_batch(
            ScriptCall(
                "acquire",
                pk,
                (
                    name,
                    request.selector.value,
                    filter_json,
                    offset,
                    SCAN_BUDGET,
                    MAX_UNDECIDED,
                    str(request.lease_id),
                    str(consumer_id),
                    duration_us,
                    core.retention_us,
                    ACQUIRE_RECLAIM,
                    "1" if schedule else "0",
                ),
            ),
            pool_id,
            duration_us,
            schedule,
        )
        reply = replies[0]
        code = text(reply[0])
        if code in ("nopool", "stale"):
            if code == "nopool" and schedule:  # no lease was made: drop the hint sent along
                yield one(core.unschedule(pool_id))
            return STALE
        if code == "schedule":  # the cleanup entry does not cover this lease: send it along
            core.covered.discard(pool_id)
            continue
        if int(reply[2]):
            core.covered.add(pool_id)
        else:
            core.covered.discard(pool_id)
        counters = reply[3:8]
        if code in ("ok", "exists"):
            yield from core.replicated(replies, pool_id, request.lease_id)
            lease_raw, proxy_id, state, count, record = reply[8:13]
            if not state or not record:
                return Acquired(None, counters)  # the proxy was deleted since (retry only)
            proxy = codec.decode_proxy(proxy_id, pool_id, state, count, record)
            return Acquired(_leased(core, request, pool_id, lease_raw, proxy), counters)
        items = reply[9:]
        chosen: dict[str, Proxy] = {}
        for i in range(0, len(items), 5):
            proxy_id, decided, state, count, record = items[i : i + 5]
            proxy = codec.decode_proxy(proxy_id, pool_id, state, count, record)
            if decided == 1 or (request.filters is not None and request.filters.matches(proxy)):
                chosen[str(proxy.id)] = proxy
            if chosen and (len(chosen) == LEASE_CANDIDATES or i + 5 >= len(items)):
                taken = yield from core.lease_proxy(
                    pool_id,
                    name,
                    list(chosen),
                    request.lease_id,
                    consumer_id,
                    duration_us,
                    move_cursor=request.selector is SelectorStrategy.ROUND_ROBIN,
                )
                taken_code = text(taken[0])
                if taken_code in ("nopool", "stale"):
                    if taken_code == "nopool":
                        yield one(core.unschedule(pool_id))
                    return STALE
                if taken_code in ("ok", "exists"):
                    held = codec.decode_lease(request.lease_id, taken[2], pool_id, name)
                    got = chosen.get(str(held.proxy_id))
                    if got is None:  # a re-sent request found an earlier attempt's lease
                        got = yield from core.read_proxy(pool_id, held.proxy_id)
                    if got is None:
                        return Acquired(None, taken[4:9])
                    got.current_leases = int(taken[3])
                    return Acquired(_leased(core, request, pool_id, taken[2], got), taken[4:9])
                # 'unavailable' or 'missing': other workers were faster; go on.
                counters = taken[1:6]
                chosen = {}
        next_offset = int(reply[8])
        if next_offset < 0:
            return Acquired(None, counters)
        offset = next_offset


def _leased(
    core: StorageCore, request: AcquireRequest, pool_id: UUID, raw: Any, proxy: Proxy
) -> Optional[LeasedProxy]:
    lease = codec.decode_lease(request.lease_id, raw, pool_id, request.pool_name)
    if lease.status is not LeaseStatus.ACTIVE:
        return None  # a retry found the lease already over: nothing is held
    core.remember(proxy.id, pool_id)
    return LeasedProxy(lease, proxy)


def release(core: StorageCore, lease: Lease) -> Op[Released]:
    """Release a lease (idempotent) and return the counters after it."""
    reply = yield from core.release(lease)
    if reply is None:
        return Released(None, None)
    code = text(reply[0])
    released_at = None
    if code != "missing":
        released_at = codec.lease_released_at(reply[6])
    return Released(released_at, reply[1:6])


def renew(core: StorageCore, lease: Lease, duration_seconds: Any) -> Op[Lease]:
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
        found = yield from core.lease_location(lease.id)
        if found is None:
            raise LeaseLostError(lease, "no such lease")
        pool_id = found[0]
    (reply,) = yield one(
        ScriptCall(
            "renew", core.keys.pool(pool_id), (str(lease.id), duration_us, core.retention_us)
        )
    )
    code = text(reply[0])
    if code == "nopool":
        raise LeaseLostError(lease, "its pool was deleted")
    if code == "missing":
        raise LeaseLostError(lease, "no such lease")
    stored = codec.decode_lease(lease.id, reply[1], pool_id, lease.pool_name or "")
    if code == "lost":
        lease.status = LeaseStatus.RELEASED
        lease.released_at = stored.released_at
        raise LeaseLostError(lease, "it expired or was released")
    lease.expires_at = stored.expires_at
    return lease


def now_utc() -> datetime:
    """Return the current time in UTC (event timestamps, as pharox's manager takes them)."""
    return datetime.now(timezone.utc)
