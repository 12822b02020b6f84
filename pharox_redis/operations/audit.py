"""The audit: prove a pool is consistent, or show where it drifted, and repair it.

Everything the scripts derive is recomputed from the proxies and the lease records:

* per pool (``lua/audit.lua``), in bounded steps, each one atomic script call that compares
  values read at the same instant (so leasing meanwhile never looks like drift): each
  proxy's lease count, the availability sets the pool keeps, the ``active`` counter, the
  time line of lease records (deadlines of active leases, purge times of released ones)
  and the index of proxy addresses (``lua/_address.lua``);
* across pools (here): the registry's two hashes, the pool keys themselves (a pool whose
  ``save_pool`` or ``delete_pool`` was cut between its two steps) and the global deadline
  index that tells cleanup which pools to visit.

With ``repair=True`` each drift is fixed inside the same script call that found it, so a
repair never races a lease; the registry is repaired by rolling an interrupted
``save_pool`` or ``delete_pool`` forward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional
from uuid import UUID

from .. import replies
from ..codec import text
from . import migrate
from .batch import Batch, Command, Op, Scan, ScriptCall, one
from .cleanup import CLAIM_GRACE_US
from .context import Context
from .pools import drop_pool_keys
from .validation import check_text

_REPAIR_PASSES = 3
AUDIT_STEPS = (
    "leases",
    "timeline",
    "counts",
    "address-index",
    "proxies",
    "records",
    "sets",
    "counters",
    "addresses",
)
SET_IDLE_SECONDS = 86_400  # a repair drops an availability set no selector used for a day
AUDIT_PAGE = 250  # proxies, set members or lease records one audit step reads (~10 ms)
# schedule.lua runs just after the lease in the same pipeline, so its hint is later than the
# lease's deadline by the time between the two calls: lateness up to this much is no drift.
SCHEDULE_SLACK_US = 1_000_000


@dataclass(frozen=True)
class Drift:
    """One difference between what is stored and what the records imply.

    Attributes
    ----------
    pool:
        The pool's name (its id when it has no name).
    what:
        What drifted: ``count``, ``available:<selector set>``, ``counter``, ``deadline``,
        ``history``, ``lease-without-proxy``, ``record-without-proxy``,
        ``proxy-without-record``, ``address`` (the address index, see ``lua/_address.lua``),
        ``registry``, ``unregistered-pool``, ``schedule`` or ``legacy-layout`` (a key in its
        0.1.0 layout; repair migrates it).
    subject:
        The proxy id, lease id, counter, address or pool name concerned.
    found:
        The stored value ('' when absent).
    expected:
        The value the records imply ('' when it should be absent).

    """

    pool: str
    what: str
    subject: str
    found: str
    expected: str

    def __str__(self) -> str:
        found, expected = self.found or "(absent)", self.expected or "(absent)"
        return f"{self.pool}: {self.what} {self.subject}: found {found}, expected {expected}"


@dataclass(frozen=True)
class AuditReport:
    """What an audit examined and the drift it found.

    Attributes
    ----------
    pools:
        Pools audited.
    proxies:
        Proxies in them.
    active_leases:
        Active (unreleased) leases in them.
    drift:
        Every difference found, empty when the pools are consistent.
    repaired:
        True when the audit ran with ``repair=True`` and fixed the drift it reports.
    dropped_sets:
        ``(pool, set)`` of each availability set the repair dropped because no selector had
        used it for ``SET_IDLE_SECONDS`` (no drift: the next acquire that asks for that
        selector builds it again).

    """

    pools: int
    proxies: int
    active_leases: int
    drift: tuple[Drift, ...]
    repaired: bool = False
    dropped_sets: tuple[tuple[str, str], ...] = ()

    @property
    def clean(self) -> bool:
        """Return True when no drift was found."""
        return not self.drift


def audit(ctx: Context, pool_name: Optional[str], repair: bool) -> Op[AuditReport]:
    """Audit one pool (by name) or every pool; see the module docstring.

    A repair runs until an audit pass finds nothing more (at most three passes: fixing a
    proxy without a record can leave a lease without a proxy for the next pass). The report
    lists the drift of every pass.
    """
    found = [
        Drift("(layout)", "legacy-layout", key, "key of 0.1.0", "")
        for key in (yield from migrate.legacy_keys(ctx))
    ]
    if found and not repair:  # nothing else can be judged before the registries move
        return AuditReport(0, 0, 0, tuple(found))
    if found:
        yield from migrate.migrate(ctx)  # the passes below read the registries it moves
    report = yield from _audit_pass(ctx, pool_name, repair)
    found += report.drift
    dropped = report.dropped_sets
    for _ in range(_REPAIR_PASSES - 1):
        if not repair or not report.drift:
            break
        report = yield from _audit_pass(ctx, pool_name, repair)
        found += report.drift
        dropped += report.dropped_sets
    return AuditReport(
        report.pools, report.proxies, report.active_leases, tuple(found), repair, dropped
    )


def _audit_pass(ctx: Context, pool_name: Optional[str], repair: bool) -> Op[AuditReport]:
    g = ctx.keys.globals
    drift: list[Drift] = []
    ids, names, hints, claims, now = yield Batch(
        (
            Command(("HGETALL", g.pool_ids)),
            Command(("HGETALL", g.pool_names)),
            Command(("ZRANGE", g.deadlines, 0, -1, "WITHSCORES")),
            Command(("HKEYS", g.claims)),
            Command(("TIME",)),
        )
    )
    registry = {UUID(text(k)): text(v) for k, v in ids.items()}
    by_name = {text(k): text(v) for k, v in names.items()}
    hint = {text(k): float(v) for k, v in hints}
    now_us = int(now[0]) * 1_000_000 + int(now[1])

    if pool_name is None:
        targets = list(registry)
        fixes = _registry_drift(ctx, registry, by_name, drift)
        for uid in (yield from _stored_pool_ids(ctx)) - set(registry):
            drift.append(Drift(str(uid), "unregistered-pool", str(uid), "keys", ""))
            if repair:
                yield from drop_pool_keys(ctx, uid)  # finish an interrupted delete_pool
        for pool in set(hint) - {str(uid) for uid in registry}:
            drift.append(Drift(pool, "schedule", pool, str(int(hint[pool])), ""))
            fixes.append(Command(("ZREM", g.deadlines, pool)))
        for pool in {text(c) for c in claims} - {str(uid) for uid in registry}:
            drift.append(Drift(pool, "schedule", pool, "cleanup claim", ""))
            fixes.append(Command(("HDEL", g.claims, pool)))
    else:
        name = check_text(pool_name, "pool_name")
        uid_text = by_name.get(name)
        if uid_text is None:
            return AuditReport(0, 0, 0, ())
        targets, fixes = [UUID(uid_text)], []
        registry = {UUID(uid_text): name}
    if repair and fixes:
        yield Batch(fixes)

    proxies = active = 0
    dropped: list[tuple[str, str]] = []
    for uid in targets:
        pool = registry.get(uid, str(uid))
        audited = yield from _audit_pool(ctx, uid, pool, repair, drift, dropped)
        if audited is None:
            # save_pool registers first, then writes the pool: finish the second step.
            drift.append(Drift(pool, "registry", str(uid), "", "pool keys"))
            if repair:
                yield one(Command(("HSET", ctx.keys.pool(uid).meta, "name", pool)))
            continue
        count, leases, earliest = audited
        proxies += count
        active += leases
        if earliest is not None:
            yield from _check_schedule(ctx, uid, pool, earliest, hint, now_us, repair, drift)
    return AuditReport(len(targets), proxies, active, tuple(drift), False, tuple(dropped))


def _audit_pool(
    ctx: Context,
    uid: UUID,
    pool: str,
    repair: bool,
    drift: list[Drift],
    dropped: list[tuple[str, str]],
) -> Op[Optional[tuple[int, int, Optional[int]]]]:
    """Run every step of ``lua/audit.lua`` over a pool, page by page.

    Returns (proxies, active leases, earliest deadline or ``sched``), or None when the pool
    has no keys.
    """
    keys = ctx.keys.pool(uid)
    mode = "repair" if repair else "check"
    proxies = active = active_proxies = 0
    earliest: Optional[int] = None
    for step in AUDIT_STEPS:
        cursor: Any = "0"
        while True:
            args = (
                step,
                mode,
                pool,
                ctx.retention_us,
                cursor,
                AUDIT_PAGE,
                SET_IDLE_SECONDS,
                active_proxies,
            )
            (raw,) = yield one(ScriptCall("audit", keys, args))
            reply = replies.audit_reply(raw)
            if reply.code == "nopool":
                return None
            for found in reply.drift:
                if found[0] == "idle-set":
                    dropped.append((pool, found[1]))
                else:
                    drift.append(Drift(pool, *found))
            a, b, c = reply.figures
            if step == "counts":
                active, earliest = int(b), int(text(c)) if c else None
                if a:  # the pool's 'sched': later leases skip schedule.lua
                    sched = int(float(text(a)))
                    earliest = sched if earliest is None else min(earliest, sched)
            elif step == "counters":
                proxies = int(a)
            elif step == "proxies":
                active_proxies += int(b)
            cursor = reply.cursor
            if cursor == "0":
                break
    return proxies, active, earliest


def _registry_drift(
    ctx: Context, registry: dict[UUID, str], by_name: dict[str, str], drift: list[Drift]
) -> list[Any]:
    """Check that the name -> id hash mirrors the id -> name hash; return the fixes.

    ``register_pool.lua`` and ``unregister_pool.lua`` write both in one step, so this only
    finds hand edits; the id -> name hash is the truth.
    """
    pool_names = ctx.keys.globals.pool_names
    wanted = {name: str(uid) for uid, name in registry.items()}
    fixes: list[Any] = []
    for name in sorted(wanted.keys() | by_name.keys()):
        if wanted.get(name) != by_name.get(name):
            drift.append(Drift(name, "registry", name, by_name.get(name, ""), wanted.get(name, "")))
            if name in wanted:
                fixes.append(Command(("HSET", pool_names, name, wanted[name])))
            else:
                fixes.append(Command(("HDEL", pool_names, name)))
    return fixes


def _stored_pool_ids(ctx: Context) -> Op[set[UUID]]:
    """Return the id of every pool that has keys, registered or not (SCAN, every node)."""
    prefix = ctx.keys.prefix
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + ":{p:*"
    tag = re.compile(re.escape(prefix) + r":\{p:([0-9a-f-]{36})\}:")
    (keys,) = yield one(Scan(pattern))
    found: set[UUID] = set()
    for key in keys:
        match = tag.match(text(key))
        if match:
            found.add(UUID(match.group(1)))
    return found


def _check_schedule(
    ctx: Context,
    uid: UUID,
    pool: str,
    earliest: int,
    hint: dict[str, float],
    now_us: int,
    repair: bool,
    drift: list[Drift],
) -> Op[None]:
    """Check that cleanup will visit a pool by its earliest deadline.

    ``earliest`` is the earliest active lease's deadline, or the pool's ``sched`` field when
    that is earlier: leases made later expect the index entry at or before it.

    A hint may be a little later than that deadline (``SCHEDULE_SLACK_US``), or a cleaner's
    claim (at most the claim grace from now); later than that, or missing, the pool's
    expired leases would wait for the next acquire of the pool to be reclaimed.
    """
    current = hint.get(str(uid))
    if current is not None and (
        current <= earliest + SCHEDULE_SLACK_US or current <= now_us + CLAIM_GRACE_US
    ):
        return
    drift.append(
        Drift(
            pool, "schedule", str(uid), "" if current is None else str(int(current)), str(earliest)
        )
    )
    if repair:
        yield one(Command(("ZADD", ctx.keys.globals.deadlines, "LT", earliest, str(uid))))
