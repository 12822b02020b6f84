"""Proxies: save (upsert), read, list and delete.

A proxy is three hash fields of its pool (``codec.py``): the state Lua reads, the connection
record only Python reads, and its lease count. Saving validates every proxy before anything
is written, and refuses to move a proxy between pools (delete it first).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union
from uuid import UUID

from pharox import PoolNotFoundError, Proxy, ProxyNotFoundError

from .. import codec, replies
from ..codec import text
from .batch import STALE, Batch, Call, Command, Op, ScriptCall, Stale, one
from .context import Context
from .resolve import in_proxy_pool
from .validation import parse_uuid

SAVE_CHUNK = 500  # proxies per save_proxies.lua call
MOVE_CHECK_CHUNK = 1000  # proxy ids per HMGET looking for them in other pools

Encoded = tuple[str, bytes, bytes]  # id, state JSON, record msgpack (codec.encode_proxy)


def save_proxies(ctx: Context, proxies: Sequence[Proxy]) -> Op[int]:
    """Insert or update proxies; validates everything before writing anything."""
    groups: dict[UUID, list[Encoded]] = {}
    pool_of: dict[str, UUID] = {}
    for proxy in proxies:
        encoded = codec.encode_proxy(proxy)
        first = pool_of.setdefault(encoded[0], proxy.pool_id)
        if first != proxy.pool_id:
            raise ValueError(
                f"proxy {encoded[0]} is given for two pools, {first} and {proxy.pool_id}"
            )
        groups.setdefault(proxy.pool_id, []).append(encoded)
    if not groups:
        return 0
    targets = list(groups)
    *exists, registry = yield Batch(
        [Command(("EXISTS", ctx.keys.pool(p).meta)) for p in targets]
        + [Command(("HKEYS", ctx.keys.globals.pool_ids))]
    )
    for pool, hit in zip(targets, exists, strict=True):
        if not hit:
            raise PoolNotFoundError(f"Pool with ID {pool} does not exist.")
    yield from _refuse_moves(ctx, groups, [UUID(text(p)) for p in registry])
    calls: list[Call] = []
    for pool, items in groups.items():
        for start in range(0, len(items), SAVE_CHUNK):
            chunk = items[start : start + SAVE_CHUNK]
            args: list[Any] = [len(chunk)]
            for item in chunk:
                args.extend(item)
            calls.append(ScriptCall("save_proxies", ctx.keys.pool(pool), args))
    for reply in (yield Batch(calls)):
        if replies.code_of(reply) == "nopool":
            raise PoolNotFoundError("A pool was deleted while its proxies were being saved.")
    for pool, items in groups.items():
        for proxy_id, _, _ in items:
            ctx.remember(UUID(proxy_id), pool)
    return sum(len(items) for items in groups.values())


def _refuse_moves(ctx: Context, groups: dict[UUID, list[Encoded]], pools: list[UUID]) -> Op[None]:
    """Raise ValueError when a proxy being saved into one pool is stored in another."""
    checks: list[tuple[UUID, UUID, list[str]]] = []
    for target, items in groups.items():
        ids = [item[0] for item in items]
        for other in pools:
            if other != target:
                for start in range(0, len(ids), MOVE_CHECK_CHUNK):
                    checks.append((target, other, ids[start : start + MOVE_CHECK_CHUNK]))
    if not checks:
        return
    found = yield Batch([Command(("HMGET", ctx.keys.pool(o).state, *ids)) for _, o, ids in checks])
    for (target, other, ids), values in zip(checks, found, strict=True):
        for proxy_id, value in zip(ids, values, strict=True):
            if value is not None:
                raise ValueError(
                    f"proxy {proxy_id} belongs to pool {other}; delete it there before "
                    f"saving it into pool {target}"
                )


def read_proxy(ctx: Context, pool_id: UUID, proxy_id: UUID) -> Op[Optional[Proxy]]:
    """Return a proxy stored in a given pool, or None."""
    pk, pid = ctx.keys.pool(pool_id), str(proxy_id)
    state, count, record = yield Batch(
        (
            Command(("HGET", pk.state, pid)),
            Command(("HGET", pk.counts, pid)),
            Command(("HGET", pk.records, pid)),
        )
    )
    if state is None or record is None:
        return None
    return codec.decode_proxy(pid, pool_id, state, count, record)


def get_proxy(ctx: Context, proxy_id: Any) -> Op[Optional[Proxy]]:
    """Return a proxy by id, or None when missing or not a UUID."""
    uid = parse_uuid(proxy_id)
    if uid is None:
        return None

    def read(pool: UUID) -> Op[Union[Proxy, Stale]]:
        proxy = yield from read_proxy(ctx, pool, uid)
        return STALE if proxy is None else proxy

    return (yield from in_proxy_pool(ctx, uid, read))


def require_proxy(ctx: Context, proxy_id: Any) -> Op[Proxy]:
    """Return a proxy by id; ProxyNotFoundError when missing or not a UUID."""
    proxy = yield from get_proxy(ctx, proxy_id)
    if proxy is None:
        raise ProxyNotFoundError(f"Proxy {proxy_id!r} not found.")
    return proxy


def list_proxies(ctx: Context, pool_id: str) -> Op[list[Proxy]]:
    """Return every proxy in a pool, ordered by id."""
    uid = parse_uuid(pool_id)
    if uid is None:
        raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
    pk = ctx.keys.pool(uid)
    exists, states, counts, records = yield Batch(
        (
            Command(("EXISTS", pk.meta)),
            Command(("HGETALL", pk.state)),
            Command(("HGETALL", pk.counts)),
            Command(("HGETALL", pk.records)),
        )
    )
    if not exists:
        raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
    out = [
        codec.decode_proxy(pid, uid, state, counts.get(pid), records[pid])
        for pid, state in states.items()
        if pid in records
    ]
    return sorted(out, key=lambda p: p.id)


def delete_proxy(ctx: Context, proxy_id: str) -> Op[None]:
    """Delete a proxy by id; ProxyNotFoundError when missing or not a UUID."""
    uid = parse_uuid(proxy_id)
    if uid is None:
        raise ProxyNotFoundError(f"Proxy {proxy_id!r} not found.")
    target: UUID = uid

    def delete(pool: UUID) -> Op[Union[bool, Stale]]:
        pk = ctx.keys.pool(pool)
        (reply,) = yield one(ScriptCall("delete_proxy", (*pk, pk.health(target)), (str(target),)))
        return True if replies.code_of(reply) == "ok" else STALE

    if not (yield from in_proxy_pool(ctx, uid, delete)):
        raise ProxyNotFoundError(f"Proxy {proxy_id!r} not found.")
    ctx.proxy_pools.pop(uid, None)
