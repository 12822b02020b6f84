"""Health: records of health checks, and the status and latency they give a proxy.

``lua/health.lua`` stores a record (history capped per proxy) and, for a health check result,
applies its status and checked_at; a reachable record newer than the latency known sets the
latency ``LOWEST_LATENCY`` orders by.
"""

from __future__ import annotations

from typing import Optional, Union
from uuid import UUID, uuid4

from pharox import (
    HealthCheckResult,
    Proxy,
    ProxyHealthRecord,
    ProxyNotFoundError,
    ProxyProtocol,
    ProxyStatus,
)

from .. import codec, replies
from .batch import STALE, Command, Op, ScriptCall, Stale, one
from .context import Context
from .resolve import in_proxy_pool, locate
from .validation import check_text


def record_health(
    ctx: Context, proxy_id: UUID, row: ProxyHealthRecord, apply: bool
) -> Op[Optional[Proxy]]:
    """Store a health record; with ``apply`` also set the proxy's status and checked_at.

    Returns the proxy after the call, or None when it is unknown. Raises ValueError for a
    field pharox's model would reject, or a latency that is not a number of milliseconds in
    ``0..codec.MAX_EXACT``.
    """
    checked = codec.to_us(row.checked_at)
    latency = codec.latency_ms(row.latency_ms)
    if row.error is not None:
        check_text(row.error, "health error message")
    args = (
        str(proxy_id),
        "1" if apply else "0",
        str(row.id),
        checked,
        "1" if row.reachable else "0",
        "" if latency is None else latency,
        ProxyProtocol(row.protocol).value,
        ProxyStatus(row.status_before).value if row.status_before else "",
        ProxyStatus(row.status_after).value,
        row.error or "",
        codec.checked_key(checked),
        str(-checked),
        ctx.health_history,
    )

    def record(pool_id: UUID) -> Op[Union[Proxy, Stale]]:
        pk = ctx.keys.pool(pool_id)
        (raw,) = yield one(ScriptCall("health", (*pk, pk.health(proxy_id)), args))
        reply = replies.proxy_reply(raw)
        if reply.code != "ok":
            return STALE
        return codec.decode_proxy(
            str(proxy_id), pool_id, reply.state, reply.lease_count, reply.record
        )

    return (yield from in_proxy_pool(ctx, proxy_id, record))


def health_records(ctx: Context, proxy_id: UUID, limit: int) -> Op[list[ProxyHealthRecord]]:
    """Return a proxy's most recent health records, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"limit must be an int, got {limit!r}")
    if limit <= 0:
        return []
    pool_id = yield from locate(ctx, proxy_id)
    if pool_id is None:
        return []
    pk = ctx.keys.pool(pool_id)
    (raws,) = yield one(Command(("ZREVRANGE", pk.health(proxy_id), 0, limit - 1)))
    return [codec.decode_health(proxy_id, raw) for raw in raws]


def last_health_result(ctx: Context, proxy_id: UUID) -> Op[Optional[HealthCheckResult]]:
    """Return the newest health result of a proxy, or None."""
    records = yield from health_records(ctx, proxy_id, 1)
    return codec.health_result(records[0]) if records else None


def apply_health_check_result(ctx: Context, result: HealthCheckResult) -> Op[Optional[Proxy]]:
    """Apply a health check's status and checked_at and record it."""
    if not isinstance(result, HealthCheckResult):
        raise ValueError(f"expected a pharox HealthCheckResult, got {type(result).__name__}")
    status = ProxyStatus(result.status)
    row = ProxyHealthRecord.model_construct(
        id=uuid4(),
        proxy_id=result.proxy_id,
        checked_at=result.checked_at,
        reachable=status in (ProxyStatus.ACTIVE, ProxyStatus.SLOW),
        latency_ms=result.latency_ms,
        protocol=result.protocol,
        status_before=None,
        status_after=status,
        error=result.error_message,
    )
    return (yield from record_health(ctx, result.proxy_id, row, apply=True))


def save_health_record(ctx: Context, record: ProxyHealthRecord) -> Op[None]:
    """Store an immutable health record; ProxyNotFoundError for an unknown proxy."""
    if not isinstance(record, ProxyHealthRecord):
        raise ValueError(f"expected a pharox ProxyHealthRecord, got {type(record).__name__}")
    proxy = yield from record_health(ctx, record.proxy_id, record, apply=False)
    if proxy is None:
        raise ProxyNotFoundError(f"Proxy {record.proxy_id} not found.")
