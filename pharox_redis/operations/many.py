"""Batch leasing: lease up to k proxies of a pool, and release many leases, in one round trip.

``lua/acquire_many.lua`` plans the leases on one walk of the selector order and makes them
in the same call: with ``distinct`` each proxy takes one lease of the batch, without it a
proxy takes as many as it has free slots; every lease is bounded by its proxy's
``max_concurrency`` as an acquire's is. ``all_or_nothing`` makes k leases or none.

Filters with a Python predicate take more, as the acquire does: the script returns
candidates in selector order without leasing (mode ``scan``), Python keeps the ones the
predicate approves, and the script leases from those, still compare-and-lease (mode
``ids``); when others were faster, the walk goes on. A filtered walk whose budget runs out
before the batch is planned goes the same way.

The lease ids are chosen before anything is sent and used in order, so a batch re-run after
a lost reply returns the leases the first run made instead of new ones.
``lua/release_many.lua`` releases a pool's leases in one call, as ``release.lua`` releases
one; the calls for every pool go in one round trip.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, Optional, Sequence, Union
from uuid import UUID

from pharox import Lease, LeaseStatus, Proxy, ProxyFilters, SelectorStrategy

from .. import codec, replies
from ..errors import NotReplicatedError
from ..filters import compile_filters
from ..outcome import Outcome, check_outcome
from ..replies import Counters, ManyReply
from .acquire import ACQUIRE_RECLAIM
from .batch import STALE, Batch, Call, Command, Op, ScriptCall, Stale, one
from .context import Context
from .leases import NOTHING_RELEASED, Released, lease_batch, unschedule
from .resolve import ensure_consumer, in_named_pool, lease_location
from .selection import MAX_UNDECIDED, SCAN_BUDGET, matching
from .validation import check_text, lease_duration_us

log = logging.getLogger("pharox_redis")

MAX_BATCH = 1000  # most leases one acquire_many may ask for


class ManyRequest(NamedTuple):
    """What one batch acquire asks for; ``lease_ids`` (k of them) are fixed before sending."""

    pool_name: str
    consumer_name: str
    duration_seconds: float
    filters: Optional[ProxyFilters]
    selector: SelectorStrategy
    lease_ids: tuple[UUID, ...]
    all_or_nothing: bool
    distinct: bool


class AcquiredMany(NamedTuple):
    """The outcome of a batch acquire: (lease, proxy) pairs in lease id order, and counters."""

    leases: list[tuple[Lease, Proxy]]
    counters: Optional[Counters]  # None when the pool does not exist


def acquire_many(ctx: Context, request: ManyRequest) -> Op[AcquiredMany]:
    """Lease up to ``len(request.lease_ids)`` proxies of a pool by selector and filters."""
    k = len(request.lease_ids)
    if not 1 <= k <= MAX_BATCH:
        raise ValueError(f"k must be between 1 and {MAX_BATCH}, got {k}")
    duration_us = lease_duration_us(request.duration_seconds)
    filter_json = compile_filters(request.filters).json
    check_text(request.pool_name, "pool_name")  # refused before a consumer is created
    consumer_id = yield from ensure_consumer(ctx, request.consumer_name)

    def attempt(pool_id: UUID) -> Op[Union[AcquiredMany, Stale]]:
        return _many_in(ctx, pool_id, request, filter_json, consumer_id, duration_us)

    got = yield from in_named_pool(ctx, request.pool_name, attempt)
    return got or AcquiredMany([], None)


class _Call:
    """One pool's batch acquire in progress: sends ``acquire_many.lua`` calls, keeps leases."""

    def __init__(
        self,
        ctx: Context,
        pool_id: UUID,
        request: ManyRequest,
        filter_json: bytes,
        consumer_id: UUID,
        duration_us: int,
    ) -> None:
        self.ctx, self.pool_id, self.request = ctx, pool_id, request
        self.filter_json, self.consumer_id, self.duration_us = filter_json, consumer_id, duration_us
        self.made: list[tuple[Lease, Proxy]] = []
        self.counters: Optional[Counters] = None

    @property
    def wanted(self) -> int:
        return len(self.request.lease_ids) - len(self.made)

    def send(
        self, mode: str, offset: int = 0, proxy_ids: Sequence[str] = ()
    ) -> Op[Union[ManyReply, Stale]]:
        """Send one call; keep the leases it made; STALE when the pool is not the named one."""
        ctx, pool_id, request = self.ctx, self.pool_id, self.request
        lease_ids = request.lease_ids[len(self.made) :]
        while True:
            schedule = mode != "scan" and pool_id not in ctx.covered
            args = (
                request.pool_name,
                request.selector.value,
                self.filter_json,
                offset,
                SCAN_BUDGET,
                MAX_UNDECIDED,
                str(self.consumer_id),
                self.duration_us,
                ctx.retention_us,
                ACQUIRE_RECLAIM,
                "1" if schedule else "0",
                mode,
                "1" if request.all_or_nothing else "0",
                "1" if request.distinct else "0",
                len(lease_ids),
                *(str(lid) for lid in lease_ids),
                *proxy_ids,
            )
            call = ScriptCall("acquire_many", ctx.keys.pool(pool_id), args)
            raw = yield lease_batch(ctx, call, pool_id, self.duration_us, schedule)
            reply = replies.many_reply(raw[0])
            if reply.code in ("nopool", "stale"):
                if reply.code == "nopool" and schedule:  # no lease was made: drop the hint
                    yield one(unschedule(ctx, pool_id))
                return STALE
            if reply.code == "schedule":  # the cleanup entry does not cover these leases
                ctx.covered.discard(pool_id)
                continue
            if reply.code == "build":  # one step of building the selector's set: send again
                continue
            break
        if reply.covered:
            ctx.covered.add(pool_id)
        elif mode != "scan":
            ctx.covered.discard(pool_id)
        self.counters = reply.counters
        if reply.leases:
            yield from self._replicated(raw, lease_ids[: len(reply.leases)])
            self._keep(reply, lease_ids)
        return reply

    def _keep(self, reply: ManyReply, lease_ids: Sequence[UUID]) -> None:
        name = reply.pool_name or self.request.pool_name
        for lid, (raw, leased) in zip(lease_ids, reply.leases, strict=False):
            lease = codec.decode_lease(lid, raw, self.pool_id, name)
            if lease.status is not LeaseStatus.ACTIVE or not leased.state or not leased.record:
                continue  # a retry found a lease already over, or its proxy deleted since
            proxy = codec.decode_proxy(
                leased.proxy_id, self.pool_id, leased.state, leased.lease_count, leased.record
            )
            self.ctx.remember(proxy.id, self.pool_id)
            self.made.append((lease, proxy))

    def _replicated(self, raw: Sequence[Any], lease_ids: Sequence[UUID]) -> Op[None]:
        """As :func:`~.leases.replicated`, for every lease of the call."""
        ctx = self.ctx
        if not ctx.wait_replicas or int(raw[-1]) >= ctx.wait_replicas:
            return
        yield one(release_many_call(ctx, self.pool_id, lease_ids))
        raise NotReplicatedError(lease_ids[0], int(raw[-1]), ctx.wait_replicas)

    def result(self) -> AcquiredMany:
        return AcquiredMany(self.made, self.counters)


def _many_in(
    ctx: Context,
    pool_id: UUID,
    request: ManyRequest,
    filter_json: bytes,
    consumer_id: UUID,
    duration_us: int,
) -> Op[Union[AcquiredMany, Stale]]:
    batch = _Call(ctx, pool_id, request, filter_json, consumer_id, duration_us)
    python = request.filters is not None and request.filters.requires_python()
    page = yield from batch.send("scan" if python else "walk")
    if isinstance(page, Stale):
        return STALE
    approved: dict[str, Proxy] = {}  # in selector order
    while page.code == "scan":
        for proxy in matching(page.found, pool_id, request.filters):
            approved.setdefault(str(proxy.id), proxy)
        taken = {str(proxy.id) for _, proxy in batch.made} if request.distinct else set()
        offered = [pid for pid in approved if pid not in taken]
        exhausted = page.next_offset < 0
        if offered and (exhausted or _room(approved, offered, request.distinct) >= batch.wanted):
            leased = yield from batch.send("ids", proxy_ids=offered)
            if isinstance(leased, Stale):
                return batch.result() if batch.made else STALE
            if batch.wanted == 0:
                break
        if exhausted:
            break
        page = yield from batch.send("scan", page.next_offset)
        if isinstance(page, Stale):
            return batch.result() if batch.made else STALE
    return batch.result()


def _room(approved: dict[str, Proxy], offered: Sequence[str], distinct: bool) -> float:
    """Return how many leases the offered proxies could take, as last seen."""
    if distinct:
        return len(offered)
    room = 0.0
    for pid in offered:
        proxy = approved[pid]
        limit = proxy.max_concurrency
        room += float("inf") if limit is None else max(0, limit - proxy.current_leases)
    return room


# ---------------------------------------------------------------------- release


def release_many_call(
    ctx: Context,
    pool_id: UUID,
    lease_ids: Sequence[UUID],
    outcomes: Sequence[Optional[Outcome]] = (),
) -> ScriptCall:
    """Return the call that releases leases of one pool (``lua/release_many.lua``).

    ``outcomes`` (when given, one per lease, None for none) go with their leases.
    """
    entries = [str(lid) for lid in lease_ids]
    for n, outcome in enumerate(outcomes):
        if outcome is not None:
            entries[n] += f" {outcome.kind} {outcome.value()}"
    policy = ""
    if any(outcome is not None for outcome in outcomes):
        policy = " ".join(str(value) for value in ctx.outcomes.args())
    return ScriptCall("release_many", ctx.keys.pool(pool_id), (ctx.retention_us, policy, *entries))


def release_many(
    ctx: Context, leases: Sequence[Lease], outcomes: Sequence[Optional[Outcome]] = ()
) -> Op[list[Released]]:
    """Release leases (idempotent), one call per pool, every pool in one round trip.

    Returns what each release did, in the order given (as :func:`~.leases.release`).
    ``outcomes`` (when given, one per lease, None for none) are applied as ``release``
    applies one.
    """
    if outcomes and len(outcomes) != len(leases):
        raise ValueError("outcomes must be one per lease")
    for outcome in outcomes:
        check_outcome(outcome)
    out: list[Released] = [NOTHING_RELEASED] * len(leases)
    by_pool: dict[UUID, list[int]] = {}
    for i, lease in enumerate(leases):
        if not isinstance(lease, Lease):
            raise ValueError(f"expected a pharox Lease, got {type(lease).__name__}")
        if not isinstance(lease.id, UUID):
            continue
        pool_id = lease.pool_id if isinstance(lease.pool_id, UUID) else None
        if pool_id is None:
            found = yield from lease_location(ctx, lease.id)
            if found is None:
                continue
            pool_id = found[0]
        by_pool.setdefault(pool_id, []).append(i)
    if not by_pool:
        return out
    pools = list(by_pool)
    calls: list[Call] = [
        release_many_call(
            ctx,
            p,
            [leases[i].id for i in by_pool[p]],
            [outcomes[i] for i in by_pool[p]] if outcomes else (),
        )
        for p in pools
    ]
    if ctx.wait_replicas:
        for p in pools:
            wait = ("WAIT", ctx.wait_replicas, ctx.wait_timeout_ms)
            calls.append(Command(wait, route=ctx.keys.pool(p).meta))
    raws = yield Batch(calls)
    for n, pool_id in enumerate(pools):
        head, results = replies.release_many_reply(raws[n])
        if head.code != "ok":
            continue
        waited = int(raws[len(pools) + n]) if ctx.wait_replicas else None
        for i, (code, raw) in zip(by_pool[pool_id], results, strict=True):
            ended = None if raw is None else codec.lease_released_at(raw)
            out[i] = Released(ended, head.counters, code == "expired")
            short = waited is not None and waited < ctx.wait_replicas
            if short and code in ("released", "expired"):
                log.warning(
                    "The release of lease %s reached %s of the %s replica(s) required in "
                    "time: a failover now could bring the lease back until its deadline.",
                    leases[i].id,
                    waited,
                    ctx.wait_replicas,
                )
    return out
