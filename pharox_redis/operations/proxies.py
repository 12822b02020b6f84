"""Proxies: save (upsert), read, list and delete.

A proxy is three hash fields of its pool (``codec.py``): the state Lua reads, the connection
record only Python reads, and its lease count. Saving validates every proxy before anything
is written, and refuses to move a proxy between pools (delete it first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union
from uuid import UUID

from pharox import PoolNotFoundError, Proxy, ProxyNotFoundError, ProxyStatus

from .. import codec, replies
from ..codec import text
from .batch import STALE, Batch, Command, Op, ScriptCall, Stale, one
from .context import Context
from .resolve import in_proxy_pool
from .validation import parse_uuid

log = logging.getLogger("pharox_redis")

SAVE_CHUNK = 500  # proxies per save_proxies.lua call
MOVE_CHECK_CHUNK = 1000  # proxy ids per HMGET looking for them in other pools

Encoded = tuple[str, bytes, bytes]  # id, state JSON, record msgpack (codec.encode_proxy)


@dataclass(frozen=True)
class SavedProxies:
    """What a save did with each proxy given, in the order given.

    A proxy's address (protocol, host in lower case, port, user) is its identity in its
    pool: a proxy saved with the address of a stored proxy updates that one, which keeps its
    id, so a list saved twice leaves one proxy per address.

    Attributes
    ----------
    ids:
        The id each proxy is stored under: its own, or the id of the stored proxy with its
        address.
    created:
        True for a proxy that was added, False for one that updated a stored proxy.

    """

    ids: tuple[UUID, ...]
    created: tuple[bool, ...]

    @property
    def created_count(self) -> int:
        """Return how many proxies were added."""
        return sum(self.created)

    @property
    def updated_count(self) -> int:
        """Return how many stored proxies were updated."""
        return len(self.created) - self.created_count


def save_proxies(ctx: Context, proxies: Sequence[Proxy]) -> Op[SavedProxies]:
    """Insert or update proxies by address; validates everything before writing anything.

    Raises
    ------
    PoolNotFoundError
        When a proxy's pool does not exist (nothing is written).
    ValueError
        When a proxy is invalid, belongs to another pool, or is a stored proxy given the
        address another stored proxy holds (nothing is written).

    """
    groups: dict[UUID, list[Encoded]] = {}
    pool_of: dict[str, UUID] = {}
    order: list[tuple[UUID, int]] = []  # each proxy's pool and place in its group
    for proxy in proxies:
        encoded = codec.encode_proxy(proxy)
        first = pool_of.setdefault(encoded[0], proxy.pool_id)
        if first != proxy.pool_id:
            raise ValueError(
                f"proxy {encoded[0]} is given for two pools, {first} and {proxy.pool_id}"
            )
        group = groups.setdefault(proxy.pool_id, [])
        order.append((proxy.pool_id, len(group)))
        group.append(encoded)
    if not groups:
        return SavedProxies((), ())
    targets = list(groups)
    *exists, registry = yield Batch(
        [Command(("EXISTS", ctx.keys.pool(p).meta)) for p in targets]
        + [Command(("HKEYS", ctx.keys.globals.pool_ids))]
    )
    for pool, hit in zip(targets, exists, strict=True):
        if not hit:
            raise PoolNotFoundError(f"Pool with ID {pool} does not exist.")
    # Only a stored proxy can be refused (its new address held by another): a save of more
    # than one script call holding one is checked whole first, so a refusal writes no call.
    several = sum(-(-len(items) // SAVE_CHUNK) for items in groups.values()) > 1
    pools = [UUID(text(p)) for p in registry]
    stored_ids = yield from _refuse_moves(ctx, groups, pools, several)
    checked = {pool: groups[pool] for pool in stored_ids}
    if checked:
        yield from _save_chunks(ctx, checked, "check")
    stored = yield from _save_chunks(ctx, groups, "write")
    for pool, saved in stored.items():
        for proxy_id, _ in saved:
            ctx.remember(proxy_id, pool)
    placed = [stored[pool][i] for pool, i in order]
    _warn_inactive(proxies, placed)
    return SavedProxies(tuple(p for p, _ in placed), tuple(c for _, c in placed))


def _warn_inactive(proxies: Sequence[Proxy], placed: list[tuple[UUID, bool]]) -> None:
    """Warn about a pool given new proxies that are all INACTIVE: none of them can be leased.

    pharox's ``Proxy`` has status INACTIVE unless told otherwise, which is easy to miss.
    """
    fresh: dict[UUID, list[Proxy]] = {}
    for proxy, (_, created) in zip(proxies, placed, strict=True):
        if created:
            fresh.setdefault(proxy.pool_id, []).append(proxy)
    for pool, added in fresh.items():
        if all(ProxyStatus(p.status) is not ProxyStatus.ACTIVE for p in added):
            log.warning(
                "pool %s got %d new proxies and none is ACTIVE: acquire cannot lease them "
                "(pharox's Proxy is INACTIVE unless status=ProxyStatus.ACTIVE is given)",
                pool,
                len(added),
            )


def _save_chunks(
    ctx: Context, groups: dict[UUID, list[Encoded]], mode: str
) -> Op[dict[UUID, list[tuple[UUID, bool]]]]:
    """Run ``lua/save_proxies.lua`` over every group in chunks; return (id, created) each."""
    calls: list[tuple[UUID, ScriptCall]] = []
    for pool, items in groups.items():
        for start in range(0, len(items), SAVE_CHUNK):
            chunk = items[start : start + SAVE_CHUNK]
            args: list[Any] = [len(chunk)]
            for item in chunk:
                args.extend(item)
            args.append(mode)
            calls.append((pool, ScriptCall("save_proxies", ctx.keys.pool(pool), args)))
    done: dict[int, Sequence[Any]] = {}
    while len(done) < len(calls):
        pending = [i for i in range(len(calls)) if i not in done]
        answers = yield Batch([calls[i][1] for i in pending])
        for i, raw in zip(pending, answers, strict=True):
            reply = replies.pool_reply(raw)
            if reply.code == "nopool":
                raise PoolNotFoundError("A pool was deleted while its proxies were being saved.")
            if reply.code == "conflict":
                proxy_id, address, holder = (text(v) for v in reply.fields)
                raise ValueError(
                    f"proxy {proxy_id} cannot take address {address!r}: proxy {holder} of "
                    f"pool {calls[i][0]} has it (delete one of them first)"
                )
            if reply.code == "ok":  # else 'build': one step of indexing an older pool
                done[i] = reply.fields
    out: dict[UUID, list[tuple[UUID, bool]]] = {pool: [] for pool in groups}
    for i, (pool, _) in enumerate(calls):
        fields = done[i]
        for j in range(1, len(fields), 2):
            out[pool].append((UUID(text(fields[j])), int(fields[j + 1]) == 1))
    return out


def _refuse_moves(
    ctx: Context, groups: dict[UUID, list[Encoded]], pools: list[UUID], own: bool
) -> Op[set[UUID]]:
    """Raise ValueError when a proxy being saved into one pool is stored in another.

    With ``own``, also return the pools that already hold a proxy given for them.
    """
    checks: list[tuple[UUID, UUID, list[str]]] = []
    for target, items in groups.items():
        ids = [item[0] for item in items]
        for other in pools:
            if other != target or own:
                for start in range(0, len(ids), MOVE_CHECK_CHUNK):
                    checks.append((target, other, ids[start : start + MOVE_CHECK_CHUNK]))
    if not checks:
        return set()
    found = yield Batch([Command(("HMGET", ctx.keys.pool(o).state, *ids)) for _, o, ids in checks])
    stored: set[UUID] = set()
    for (target, other, ids), values in zip(checks, found, strict=True):
        for proxy_id, value in zip(ids, values, strict=True):
            if value is not None and other == target:
                stored.add(target)
            elif value is not None:
                raise ValueError(
                    f"proxy {proxy_id} belongs to pool {other}; delete it there before "
                    f"saving it into pool {target}"
                )
    return stored


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


def busiest_proxies(ctx: Context, pool_id: UUID, top: int) -> Op[list[Proxy]]:
    """Return the ``top`` proxies of a pool holding the most leases, most first.

    Reads the pool's lease counts (only leased proxies have one) and then those proxies,
    so its work grows with the leased proxies, not the pool's size (``pharox-redis stats``).
    """
    (counts,) = yield one(Command(("HGETALL", ctx.keys.pool(pool_id).counts)))
    ranked = sorted(counts.items(), key=lambda item: (-int(item[1]), text(item[0])))[:top]
    out = []
    for proxy_id, _ in ranked:
        proxy = yield from read_proxy(ctx, pool_id, UUID(text(proxy_id)))
        if proxy is not None:  # released and deleted in between
            out.append(proxy)
    return out
