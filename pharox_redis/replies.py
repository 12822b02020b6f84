"""The replies of the Lua scripts, parsed in one place.

Every pool script answers ``{code, pool name, counters, fields...}`` (``lua/_pool.lua``): the
pool's name (None when there is no such pool), the five pool counters (None when the script
does not report them), then fields of its own. :func:`pool_reply` reads that head; one parser
per script below names the fields, so no caller indexes a reply. Values stay as Redis sent
them (bytes, or str with ``decode_responses``); ``codec.py`` turns records into pharox models.
Replies are named tuples: two are parsed for every acquire and release.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

from .codec import text

CANDIDATE_WIDTH = 5  # values per candidate a selector walk returns (see walk in _select.lua)


Counters = Sequence[int]
"""The five pool counters: total, active, available, leased, leases."""


class Candidate(NamedTuple):
    """A proxy a selector walk returned: decided (it matches) or left to a Python predicate."""

    proxy_id: Any
    decided: bool
    state: Any
    lease_count: Any
    record: Any


class PoolReply(NamedTuple):
    """The head every pool script's reply starts with, and the fields after it."""

    code: str
    pool_name: Optional[str]
    counters: Optional[Counters]
    fields: Sequence[Any]


def pool_reply(raw: Sequence[Any]) -> PoolReply:
    """Split a pool script's reply into its head and its own fields."""
    code, name, counters, *fields = raw
    return PoolReply(
        text(code),
        None if name is None else text(name),
        counters,
        fields,
    )


def candidates(flat: Sequence[Any]) -> list[Candidate]:
    """Return the candidates of a selector walk (five values each)."""
    return [
        Candidate(flat[i], flat[i + 1] == 1, flat[i + 2], flat[i + 3], flat[i + 4])
        for i in range(0, len(flat), CANDIDATE_WIDTH)
    ]


class AcquireReply(NamedTuple):
    """``acquire.lua``: a lease (``ok``/``exists``), candidates (``scan``), or a refusal.

    Attributes
    ----------
    covered:
        True when the pool's cleanup entry covers a later lease of the same duration.
    lease:
        The lease record (``ok``/``exists``).
    leased:
        The leased proxy as a candidate (``ok``/``exists``); its state and record are None
        when the proxy was deleted since (a retry found an old lease).
    next_offset:
        Where a ``scan`` continues (-1 when the order is exhausted).
    found:
        The candidates of a ``scan`` (or ``queued``).
    miss:
        For a ``scan`` or ``queued`` that found nothing: why, proxies, ACTIVE ones, available
        ones.
    order:
        ``queued``: the waiter's place in the pool's wait queue (its score).
    until_us:
        ``queued``: microseconds until the pool's earliest lease deadline (None: no lease).

    """

    code: str
    pool_name: Optional[str]
    counters: Optional[Counters]
    covered: bool = False
    lease: Any = None
    leased: Optional[Candidate] = None
    next_offset: int = -1
    found: Sequence[Candidate] = ()
    miss: Optional[Sequence[Any]] = None
    order: Any = None
    until_us: Optional[int] = None


def _split_miss(rest: Sequence[Any]) -> tuple[Sequence[Any], Optional[Sequence[Any]]]:
    """Split a miss (``'miss', why, proxies, active, available``) off a reply's candidates."""
    if rest and text(rest[0]) == "miss":  # a candidate starts with a proxy id
        return [], rest[1:]
    return rest, None


def acquire_reply(raw: Sequence[Any]) -> AcquireReply:
    """Parse a reply of ``acquire.lua``."""
    code, name, counters, *f = raw
    code = text(code)
    head = (code, None if name is None else text(name), counters)
    if code in ("ok", "exists"):
        covered, lease, proxy_id, state, count, record = f
        return AcquireReply(
            *head, covered == 1, lease, Candidate(proxy_id, True, state, count, record)
        )
    if code == "scan":
        rest, miss = _split_miss(f[2:])
        return AcquireReply(
            *head, f[0] == 1, next_offset=int(f[1]), found=candidates(rest), miss=miss
        )
    if code == "queued":  # acquire.lua with a waiter, and wait.lua
        until = None if f[3] in (b"", "") else int(f[3])
        rest, miss = _split_miss(f[4:])
        return AcquireReply(
            *head,
            f[0] == 1,
            next_offset=-1,
            found=candidates(rest),
            miss=miss,
            order=f[2],
            until_us=until,
        )
    return AcquireReply(*head)


class FindReply(NamedTuple):
    """``find.lua``: where the walk stopped and the candidates it found."""

    code: str
    next_offset: int
    found: Sequence[Candidate]


def find_reply(raw: Sequence[Any]) -> FindReply:
    """Parse a reply of ``find.lua``."""
    head = pool_reply(raw)
    if head.code != "ok":
        return FindReply(head.code, -1, ())
    return FindReply(head.code, int(head.fields[0]), candidates(head.fields[1:]))


class LeaseReply(NamedTuple):
    """``lease.lua``: the lease and the proxy's lease count (``ok``/``exists``)."""

    code: str
    pool_name: Optional[str]
    counters: Optional[Counters]
    lease: Any = None
    lease_count: int = 0


def lease_reply(raw: Sequence[Any]) -> LeaseReply:
    """Parse a reply of ``lease.lua``."""
    head = pool_reply(raw)
    if head.code in ("ok", "exists"):
        lease, count = head.fields
        return LeaseReply(head.code, head.pool_name, head.counters, lease, int(count))
    return LeaseReply(head.code, head.pool_name, head.counters)


class ReleaseReply(NamedTuple):
    """``release.lua``: the lease record after the call (None when there is none)."""

    code: str
    pool_name: Optional[str]
    counters: Optional[Counters]
    lease: Any = None


def release_reply(raw: Sequence[Any]) -> ReleaseReply:
    """Parse a reply of ``release.lua``."""
    code, name, counters, *f = raw
    return ReleaseReply(
        text(code),
        None if name is None else text(name),
        counters,
        f[0] if f else None,
    )


class RenewReply(NamedTuple):
    """``renew.lua``: the lease record after the call (``ok``/``lost``)."""

    code: str
    lease: Any = None


def renew_reply(raw: Sequence[Any]) -> RenewReply:
    """Parse a reply of ``renew.lua``."""
    head = pool_reply(raw)
    return RenewReply(head.code, head.fields[0] if head.fields else None)


class ReclaimReply(NamedTuple):
    """``reclaim.lua``: leases reclaimed, whether more are due, the next deadline ('')."""

    code: str
    reclaimed: int = 0
    more: bool = False
    next_deadline: Any = ""


def reclaim_reply(raw: Sequence[Any]) -> ReclaimReply:
    """Parse a reply of ``reclaim.lua``."""
    head = pool_reply(raw)
    if head.code != "ok":
        return ReclaimReply(head.code)
    reclaimed, more, next_deadline = head.fields
    return ReclaimReply(head.code, int(reclaimed), more == 1, next_deadline)


class ProxyReply(NamedTuple):
    """``health.lua``: the proxy after the call (``ok``): state, lease count and record."""

    code: str
    state: Any = None
    lease_count: Any = None
    record: Any = None


def proxy_reply(raw: Sequence[Any]) -> ProxyReply:
    """Parse a reply of ``health.lua``."""
    head = pool_reply(raw)
    if head.code != "ok":
        return ProxyReply(head.code)
    state, count, record = head.fields
    return ProxyReply(head.code, state, count, record)


def code_of(raw: Sequence[Any]) -> str:
    """Return the code of a pool script that answers nothing else that is read.

    ``save_proxies.lua`` and ``delete_proxy.lua``.
    """
    return pool_reply(raw).code


class AuditReply(NamedTuple):
    """``audit.lua``: one step's next cursor, its three figures and the drift it found.

    The figures: for ``counts`` the pool's ``sched`` field, its active leases and earliest
    deadline ('' for none); for ``counters`` the number of proxies; otherwise items examined.
    """

    code: str
    cursor: str = "0"
    figures: tuple[Any, Any, Any] = (0, 0, "")
    drift: Sequence[tuple[str, str, str, str]] = ()


def audit_reply(raw: Sequence[Any]) -> AuditReply:
    """Parse a reply of ``audit.lua``."""
    head = pool_reply(raw)
    if head.code != "ok":
        return AuditReply(head.code)
    cursor, a, b, c, *flat = head.fields
    values = [text(v) for v in flat]
    drift = [
        (values[i], values[i + 1], values[i + 2], values[i + 3]) for i in range(0, len(values), 4)
    ]
    return AuditReply(head.code, text(cursor), (a, b, c), drift)


# ---------------------------------------------------------------------- global scripts


def register_reply(raw: Sequence[Any]) -> Optional[str]:
    """Parse ``register_pool.lua``: None when registered, else the id holding the name."""
    return None if text(raw[0]) == "ok" else text(raw[1])


def unregister_reply(raw: Sequence[Any]) -> bool:
    """Parse ``unregister_pool.lua``: True when the pool was registered."""
    return text(raw[0]) == "ok"


def due_reply(raw: Sequence[Any]) -> list[tuple[str, Any]]:
    """Parse ``due.lua``: the (pool id, claim) pairs handed out to the caller."""
    return [(text(raw[i]), raw[i + 1]) for i in range(0, len(raw), 2)]


# ---------------------------------------------------------------------- rotate and batches


class RotateReply(NamedTuple):
    """``rotate.lua``: the release of the held lease, and the acquire after it.

    Attributes
    ----------
    released:
        The release as ``release.lua`` answers it; None when nothing was done (``schedule``,
        ``nopool``, ``stale``).
    acquired:
        The acquire as ``acquire.lua`` answers it (``ok``, ``exists``, ``scan``...).

    """

    released: Optional[ReleaseReply]
    acquired: AcquireReply


def rotate_reply(raw: Sequence[Any]) -> RotateReply:
    """Parse a reply of ``rotate.lua``."""
    code, name, counters, *f = raw
    if text(code) not in ("ok", "exists", "scan"):
        return RotateReply(None, acquire_reply(raw))
    released_code, released, *rest = f
    head = (text(released_code), None if name is None else text(name), counters, released)
    return RotateReply(ReleaseReply(*head), acquire_reply([code, name, counters, *rest]))


class ManyReply(NamedTuple):
    """``acquire_many.lua``: the leases made (``ok``/``exists``) or candidates (``scan``).

    Attributes
    ----------
    covered:
        As in :class:`AcquireReply`.
    next_offset:
        Where a ``scan`` continues (-1 when the order is exhausted).
    leases:
        Each lease made as (lease record, the leased proxy as a candidate).
    found:
        The candidates of a ``scan`` (or ``queued``).
    order:
        ``queued``: the waiter's place in the pool's wait queue (its score).
    until_us:
        ``queued``: microseconds until the pool's earliest lease deadline (None: no lease).

    """

    code: str
    pool_name: Optional[str]
    counters: Optional[Counters]
    covered: bool = False
    next_offset: int = -1
    leases: Sequence[tuple[Any, Candidate]] = ()
    found: Sequence[Candidate] = ()


def many_reply(raw: Sequence[Any]) -> ManyReply:
    """Parse a reply of ``acquire_many.lua``."""
    head = pool_reply(raw)
    if head.code not in ("ok", "exists", "scan"):
        return ManyReply(head.code, head.pool_name, head.counters)
    covered, next_offset, made, *flat = head.fields
    made = int(made)
    width = CANDIDATE_WIDTH
    leases = [
        (flat[i], Candidate(flat[i + 1], True, flat[i + 2], flat[i + 3], flat[i + 4]))
        for i in range(0, made * width, width)
    ]
    return ManyReply(
        head.code,
        head.pool_name,
        head.counters,
        covered == 1,
        int(next_offset),
        leases,
        candidates(flat[made * width :]),
    )


def release_many_reply(raw: Sequence[Any]) -> tuple[PoolReply, list[tuple[str, Any]]]:
    """Parse ``release_many.lua``: its head and (release code, lease record) per lease."""
    head = pool_reply(raw)
    flat = head.fields
    return head, [(text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
