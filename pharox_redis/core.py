"""The sans-I/O core shared by the sync and async storages.

Each operation is a generator: it yields a :class:`Batch` of Redis calls, receives their
replies as a list, and finally returns its result. The shells (``RedisStorage`` here, an
asyncio one later) only execute batches, one round trip each, so all logic (keys, argument
encoding, reply decoding, retries on stale caches) lives here once.

Every batch must be safe to send twice: the shells re-send a whole batch when Redis
answers NOSCRIPT, and redis-py's ``Retry`` may re-send a command whose reply was lost. All
scripts are idempotent for that reason (a lease retried with the same id returns the lease).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generator, Optional, Sequence, TypeVar, Union
from uuid import UUID, uuid4

from pharox import (
    HealthCheckResult,
    InvalidLeaseError,
    Lease,
    PoolNotFoundError,
    PoolStatsSnapshot,
    Proxy,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyNotFoundError,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    ProxyUnavailableError,
    SelectorStrategy,
)

from . import codec
from .codec import text
from .errors import NotReplicatedError
from .filters import CompiledFilter, compile_filters
from .keys import KeySchema

T = TypeVar("T")

MAX_LEASE_SECONDS = 100 * 365 * 24 * 3600
SCAN_BUDGET = 1000  # candidates find.lua examines per call
MAX_UNDECIDED = 64  # candidates find.lua hands to a Python predicate per call
DUE_BATCH = 256  # pools cleanup takes from the global deadline index per round trip
CLAIM_GRACE_US = 30_000_000  # cleanup visits a pool again this late if its cleaner died
RECLAIM_BATCH = 256  # expired leases reclaim.lua releases per call
SAVE_CHUNK = 500  # proxies per save_proxies.lua call
_PROXY_CACHE_LIMIT = 100_000
_STATS_FIELDS = ("name", "total", "active", "available", "leased", "leases")


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """Run one of the scripts in ``lua/`` with these KEYS and ARGV."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Command:
    """Run one plain Redis command."""

    args: Sequence[Any]


Call = Union[ScriptCall, Command]


@dataclass(frozen=True, slots=True)
class Batch:
    """Calls sent in one round trip; ``atomic`` wraps them in MULTI/EXEC (one slot only)."""

    calls: Sequence[Call]
    atomic: bool = False


Op = Generator[Batch, list[Any], T]


def one(call: Call) -> Batch:
    """Return a batch of a single call."""
    return Batch((call,))


def parse_uuid(value: Any) -> Optional[UUID]:
    """Return value as a UUID, or None when it is not one."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def lease_duration_us(seconds: Any) -> int:
    """Return a lease duration in microseconds.

    Raises
    ------
    InvalidLeaseError
        Unless ``seconds`` is a finite number in (0, 100 years].

    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidLeaseError(f"duration_seconds must be a number, got {seconds!r}")
    if not seconds > 0:  # also NaN; no float() of an int too large for a float
        raise InvalidLeaseError("duration_seconds must be positive.")
    if seconds > MAX_LEASE_SECONDS:  # also inf
        raise InvalidLeaseError(f"duration_seconds may be at most {MAX_LEASE_SECONDS} (100 years).")
    return max(1, round(seconds * 1_000_000))


def _check_name(value: Any, what: str) -> str:
    """Return a pool or consumer name; ValueError unless it is a str Redis can store.

    Any text is a valid name (names are hash fields and values, never part of a key), but
    not a str with lone surrogates, which has no UTF-8 encoding.
    """
    return check_text(value, what)


def check_text(value: Any, what: str) -> str:
    """Return ``value`` if it is a str that encodes to UTF-8, else raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


class StorageCore:
    """All storage logic, free of I/O.

    Parameters
    ----------
    keys:
        The key schema (prefix) to use.
    lease_retention_seconds:
        How long released and reclaimed lease records are kept.
    health_history:
        Most health records kept per proxy.
    wait_replicas:
        Replicas that must acknowledge a new lease (``WAIT``) before it is handed out.
    wait_timeout:
        Seconds ``WAIT`` may block for them.

    """

    def __init__(
        self,
        keys: KeySchema,
        lease_retention_seconds: float,
        health_history: int,
        wait_replicas: int = 0,
        wait_timeout: float = 0.05,
    ):
        if not math.isfinite(lease_retention_seconds) or lease_retention_seconds < 0:
            raise ValueError("lease_retention_seconds must be a finite number >= 0")
        if health_history < 1:
            raise ValueError("health_history must be at least 1")
        if not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ValueError("wait_replicas must be an int >= 0")
        if not (isinstance(wait_timeout, (int, float)) and 0 < wait_timeout < 3600):
            raise ValueError("wait_timeout must be a number of seconds in (0, 3600)")
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, round(wait_timeout * 1000))
        self.keys = keys
        self.retention_us = round(lease_retention_seconds * 1_000_000)
        self.health_history = health_history
        self._pool_ids: dict[str, UUID] = {}
        self._consumers: dict[str, UUID] = {}
        self._proxy_pools: dict[UUID, UUID] = {}
        # Pools whose cleanup entry covered this process's last acquire: the next one is
        # sent without schedule.lua (acquire.lua refuses it, changing nothing, if wrong).
        self.covered: set[UUID] = set()

    # ------------------------------------------------------------------ resolution

    def pool_id(self, name: str, refresh: bool = False) -> Op[Optional[UUID]]:
        """Resolve a pool name to its id (cached; scripts detect a stale entry).

        The empty name is never cached: scripts take an expected name of '' as "any name",
        so they could not detect that the pool behind it was renamed.
        """
        _check_name(name, "pool_name")
        if not refresh and name and name in self._pool_ids:
            return self._pool_ids[name]
        (raw,) = yield one(Command(("HGET", self.keys.globals.pool_names, name)))
        if raw is None:
            self._pool_ids.pop(name, None)
            return None
        pool_id = UUID(text(raw))
        if name:
            self._pool_ids[name] = pool_id
        return pool_id

    def pool_list(self) -> Op[dict[UUID, str]]:
        """Return every pool's id and name from the registry."""
        (raw,) = yield one(Command(("HGETALL", self.keys.globals.pool_ids)))
        return {UUID(text(k)): text(v) for k, v in raw.items()}

    def locate(self, proxy_id: UUID, refresh: bool = False) -> Op[Optional[UUID]]:
        """Return the id of the pool holding a proxy, or None."""
        cached = self._proxy_pools.get(proxy_id)
        if cached is not None and not refresh:
            return cached
        pools = list((yield from self.pool_list()))
        if not pools:
            return None
        found = yield Batch(
            [Command(("HEXISTS", self.keys.pool(p).state, str(proxy_id))) for p in pools]
        )
        for pool, hit in zip(pools, found, strict=True):
            if hit:
                self.remember(proxy_id, pool)
                return pool
        self._proxy_pools.pop(proxy_id, None)
        return None

    def remember(self, proxy_id: UUID, pool_id: UUID) -> None:
        """Cache which pool holds a proxy (bounded; scripts detect stale entries)."""
        if len(self._proxy_pools) >= _PROXY_CACHE_LIMIT:
            self._proxy_pools.clear()
        self._proxy_pools[proxy_id] = pool_id

    def read_proxy(self, pool_id: UUID, proxy_id: UUID) -> Op[Optional[Proxy]]:
        """Return a proxy stored in a given pool, or None."""
        pk, pid = self.keys.pool(pool_id), str(proxy_id)
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

    # ------------------------------------------------------------------ consumers

    def ensure_consumer(self, consumer_name: str) -> Op[UUID]:
        """Return the consumer's id, creating it atomically if it is new."""
        _check_name(consumer_name, "consumer_name")
        cached = self._consumers.get(consumer_name)
        if cached is not None:
            return cached
        key = self.keys.globals.consumers
        _, raw = yield Batch(
            (
                Command(("HSETNX", key, consumer_name, str(uuid4()))),
                Command(("HGET", key, consumer_name)),
            ),
            atomic=True,
        )
        consumer_id = UUID(text(raw))
        self._consumers[consumer_name] = consumer_id
        return consumer_id

    def add_consumer(self, consumer_id: UUID, name: str) -> Op[None]:
        """Register a consumer under a given id (overwrites, like pharox's in-memory)."""
        _check_name(name, "consumer name")
        if not isinstance(consumer_id, UUID):
            raise ValueError(f"consumer id must be a UUID, got {consumer_id!r}")
        yield one(Command(("HSET", self.keys.globals.consumers, name, str(consumer_id))))
        self._consumers[name] = consumer_id

    # ------------------------------------------------------------------ leasing

    def find_available_proxy(
        self,
        pool_name: str,
        filters: Optional[ProxyFilters],
        selector: Optional[SelectorStrategy],
    ) -> Op[Optional[Proxy]]:
        """Return the first available proxy in selector order that matches the filters."""
        _check_name(pool_name, "pool_name")
        compiled = compile_filters(filters)
        strategy = SelectorStrategy(selector or SelectorStrategy.FIRST_AVAILABLE)
        for refresh in (False, True):
            pool_id = yield from self.pool_id(pool_name, refresh)
            if pool_id is None:
                return None
            found = yield from self._find(pool_id, pool_name, compiled, filters, strategy)
            if found is not STALE:
                return found  # type: ignore[return-value]
        return None

    def _find(
        self,
        pool_id: UUID,
        pool_name: str,
        compiled: CompiledFilter,
        filters: Optional[ProxyFilters],
        strategy: SelectorStrategy,
    ) -> Op[object]:
        pk = self.keys.pool(pool_id)
        offset = 0
        while True:
            (reply,) = yield one(
                ScriptCall(
                    "find",
                    pk,
                    (
                        pool_name,
                        strategy.value,
                        compiled.json,
                        offset,
                        SCAN_BUDGET,
                        MAX_UNDECIDED,
                    ),
                )
            )
            if text(reply[0]) != "ok":
                return STALE
            items = reply[2:]
            for i in range(0, len(items), 5):
                proxy_id, decided, state, count, record = items[i : i + 5]
                proxy = codec.decode_proxy(proxy_id, pool_id, state, count, record)
                if decided == 1 or (filters is not None and filters.matches(proxy)):
                    if strategy is SelectorStrategy.ROUND_ROBIN and not (decided == 1 and i == 0):
                        yield one(Command(("SET", pk.cursor, str(proxy.id))))
                    self.remember(proxy.id, pool_id)
                    return proxy
            if int(reply[1]) < 0:
                return None
            offset = int(reply[1])

    def create_lease(
        self,
        proxy: Proxy,
        consumer_name: str,
        duration_seconds: Any,
        lease_id: Optional[UUID] = None,
    ) -> Op[Lease]:
        """Lease a given proxy atomically (see ``lua/lease.lua``)."""
        duration_us = lease_duration_us(duration_seconds)
        if not isinstance(proxy, Proxy):
            raise ValueError(f"expected a pharox Proxy, got {type(proxy).__name__}")
        consumer_id = yield from self.ensure_consumer(consumer_name)
        lease_id = lease_id or uuid4()
        pool_id: Optional[UUID] = proxy.pool_id if isinstance(proxy.id, UUID) else None
        for refresh in (False, True):
            if not isinstance(pool_id, UUID):
                break
            reply = yield from self.lease_proxy(
                pool_id, "", [str(proxy.id)], lease_id, consumer_id, duration_us
            )
            code = text(reply[0])
            if code in ("ok", "exists"):
                self.remember(proxy.id, pool_id)
                return codec.decode_lease(lease_id, reply[2], pool_id, text(reply[1]))
            if code == "unavailable":
                raise ProxyUnavailableError(f"Proxy {proxy.id} is no longer available.")
            if code == "nopool":  # no lease was made: drop the hint scheduled with it
                yield one(self.unschedule(pool_id))
            if refresh:
                break
            located = yield from self.locate(proxy.id, refresh=True)
            if located == pool_id:
                break
            pool_id = located
        raise ProxyNotFoundError(f"Proxy {proxy.id} not found.")

    def lease_proxy(
        self,
        pool_id: UUID,
        expected_name: str,
        proxy_ids: Sequence[str],
        lease_id: UUID,
        consumer_id: UUID,
        duration_us: int,
        move_cursor: bool = False,
    ) -> Op[Any]:
        """Lease the first available of ``proxy_ids`` (``lua/lease.lua``); return the reply.

        Pipelined with the cleanup schedule, so it is one round trip.
        """
        first, *more = proxy_ids
        replies = yield self.lease_batch(
            ScriptCall(
                "lease",
                self.keys.pool(pool_id),
                (
                    expected_name,
                    first,
                    str(lease_id),
                    str(consumer_id),
                    duration_us,
                    self.retention_us,
                    "1" if move_cursor else "0",
                    *more,
                ),
            ),
            pool_id,
            duration_us,
        )
        reply = replies[0]
        if text(reply[0]) in ("ok", "exists"):
            yield from self.replicated(replies, pool_id, lease_id)
        return reply

    def lease_batch(
        self, call: ScriptCall, pool_id: UUID, duration_us: int, schedule: bool = True
    ) -> Batch:
        """Return a lease-making call pipelined with its schedule (and ``WAIT``, if set).

        Still one round trip; ``WAIT`` comes last, so it covers every write before it.
        """
        calls: list[Call] = [call]
        if schedule:
            calls.append(self.schedule(pool_id, duration_us))
        if self.wait_replicas:
            calls.append(Command(("WAIT", self.wait_replicas, self.wait_timeout_ms)))
        return Batch(calls)

    def replicated(self, replies: Sequence[Any], pool_id: UUID, lease_id: UUID) -> Op[None]:
        """Check the ``WAIT`` of a lease batch; release the lease and raise when it fell short.

        Raises
        ------
        NotReplicatedError
            When fewer than ``wait_replicas`` replicas acknowledged the lease.

        """
        if not self.wait_replicas or int(replies[-1]) >= self.wait_replicas:
            return
        yield one(
            ScriptCall("release", self.keys.pool(pool_id), (str(lease_id), self.retention_us))
        )
        raise NotReplicatedError(lease_id, int(replies[-1]), self.wait_replicas)

    def schedule(self, pool_id: UUID, duration_us: int) -> ScriptCall:
        """Return the call that makes cleanup visit a pool when a new lease expires."""
        g = self.keys.globals
        return ScriptCall("schedule", (g.deadlines, g.claims), (str(pool_id), duration_us))

    def unschedule(self, pool_id: UUID) -> Command:
        """Return the call that drops the cleanup hint of a pool that turned out not to exist.

        A lease goes out pipelined with its ``schedule`` call, so a lease refused with
        ``nopool`` still left a hint naming a pool that is not there.
        """
        return Command(("ZREM", self.keys.globals.deadlines, str(pool_id)))

    def release(self, lease: Lease) -> Op[Optional[list[Any]]]:
        """Release a lease (see ``lua/release.lua``) and return the script's reply.

        None when the lease's pool is unknown or gone. Releasing is idempotent.
        """
        if not isinstance(lease, Lease):
            raise ValueError(f"expected a pharox Lease, got {type(lease).__name__}")
        if not isinstance(lease.id, UUID):
            return None  # no lease has such an id
        pool_id = lease.pool_id if isinstance(lease.pool_id, UUID) else None
        if pool_id is None:
            found = yield from self.lease_location(lease.id)
            if found is None:
                return None
            pool_id = found[0]
        (reply,) = yield one(
            ScriptCall("release", self.keys.pool(pool_id), (str(lease.id), self.retention_us))
        )
        return None if text(reply[0]) == "nopool" else list(reply)

    def release_lease(self, lease: Lease) -> Op[None]:
        """Release a lease; a no-op when it is unknown, released or reclaimed."""
        yield from self.release(lease)

    def cleanup_expired_leases(self) -> Op[int]:
        """Reclaim every expired lease; costs one round trip when none has expired.

        The global index names the pools that may hold expired leases (``lua/due.lua``);
        each is reclaimed in bounded batches, and its hint is put back by the next call.
        """
        g = self.keys.globals
        reclaimed = 0
        put_back: list[Any] = []
        while True:
            (due,) = yield one(
                ScriptCall("due", (g.deadlines, g.claims), (DUE_BATCH, CLAIM_GRACE_US, *put_back))
            )
            if not due:
                return reclaimed
            claims = [(text(due[i]), due[i + 1]) for i in range(0, len(due), 2)]
            replies = yield Batch([self._reclaim(pool) for pool, _ in claims])
            put_back = []
            for (pool, claim), reply in zip(claims, replies, strict=True):
                reclaimed += int(reply[0])
                while int(reply[1]):
                    (reply,) = yield one(self._reclaim(pool))
                    reclaimed += int(reply[0])
                put_back += [pool, claim, reply[2]]

    def _reclaim(self, pool_id: str) -> ScriptCall:
        return ScriptCall("reclaim", self.keys.pool(pool_id), (self.retention_us, RECLAIM_BATCH))

    def get_pool_stats(self, pool_name: str) -> Op[Optional[PoolStatsSnapshot]]:
        """Return the pool's counters, one round trip."""
        _check_name(pool_name, "pool_name")
        for refresh in (False, True):
            pool_id = yield from self.pool_id(pool_name, refresh)
            if pool_id is None:
                return None
            (values,) = yield one(Command(("HMGET", self.keys.pool(pool_id).meta, *_STATS_FIELDS)))
            if values[0] is not None and text(values[0]) == pool_name:
                return stats_snapshot(pool_name, values[1:])
        return None

    # ------------------------------------------------------------------ pools

    def save_pool(self, pool: ProxyPool) -> Op[None]:
        """Insert or update a pool; a rename keeps its proxies."""
        if not isinstance(pool, ProxyPool):
            raise ValueError(f"expected a pharox ProxyPool, got {type(pool).__name__}")
        name = _check_name(pool.name, "pool name")
        if not isinstance(pool.id, UUID):
            raise ValueError(f"pool id must be a UUID, got {pool.id!r}")
        if pool.description is not None:
            check_text(pool.description, "pool description")
        g = self.keys.globals
        (reply,) = yield one(
            ScriptCall("register_pool", (g.pool_ids, g.pool_names), (str(pool.id), name))
        )
        if text(reply[0]) == "conflict":
            raise ValueError(f"pool name {name!r} is already used by pool {text(reply[1])}")
        meta = self.keys.pool(pool.id).meta
        description: Command
        if pool.description is None:
            description = Command(("HDEL", meta, "description"))
        else:
            description = Command(("HSET", meta, "description", pool.description))
        yield Batch((Command(("HSET", meta, "name", name)), description), atomic=True)
        for old in [n for n, i in self._pool_ids.items() if i == pool.id]:
            del self._pool_ids[old]
        self._pool_ids[name] = pool.id

    def get_pool(self, pool_id: str) -> Op[ProxyPool]:
        """Return a pool by id; PoolNotFoundError when missing or not a UUID."""
        uid = parse_uuid(pool_id)
        if uid is None:
            raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
        (values,) = yield one(Command(("HMGET", self.keys.pool(uid).meta, "name", "description")))
        if values[0] is None:
            raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
        return pool_model(uid, values[0], values[1])

    def list_pools(self) -> Op[list[ProxyPool]]:
        """Return every pool."""
        pools = yield from self.pool_list()
        ids = list(pools)
        if not ids:
            return []
        metas = yield Batch(
            [Command(("HMGET", self.keys.pool(p).meta, "name", "description")) for p in ids]
        )
        return [
            pool_model(p, v[0], v[1]) for p, v in zip(ids, metas, strict=True) if v[0] is not None
        ]

    def delete_pool(self, pool_id: str) -> Op[None]:
        """Delete a pool with its proxies, leases, health history and indexes."""
        uid = parse_uuid(pool_id)
        if uid is None:
            raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
        g = self.keys.globals
        (reply,) = yield one(
            ScriptCall(
                "unregister_pool", (g.pool_ids, g.pool_names, g.deadlines, g.claims), (str(uid),)
            )
        )
        if text(reply[0]) == "missing":
            raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
        yield from self.drop_pool_keys(uid)

    def drop_pool_keys(self, uid: UUID) -> Op[None]:
        """Remove an unregistered pool's keys: meta first, so a crash leaves no live pool."""
        pk = self.keys.pool(uid)
        yield one(Command(("UNLINK", pk.meta)))
        cursor = 0
        while True:
            ((cursor, fields),) = yield one(Command(("HSCAN", pk.state, cursor, "COUNT", 1000)))
            if fields:
                yield one(Command(("UNLINK", *(pk.health(text(f)) for f in fields))))
            if int(cursor) == 0:
                break
        yield one(Command(("UNLINK", *pk)))
        for name in [n for n, i in self._pool_ids.items() if i == uid]:
            del self._pool_ids[name]
        for proxy in [p for p, i in self._proxy_pools.items() if i == uid]:
            del self._proxy_pools[proxy]

    # ------------------------------------------------------------------ proxies

    def save_proxies(self, proxies: Sequence[Proxy]) -> Op[int]:
        """Insert or update proxies; validates everything before writing anything."""
        groups: dict[UUID, list[tuple[str, bytes, bytes]]] = {}
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
            [Command(("EXISTS", self.keys.pool(p).meta)) for p in targets]
            + [Command(("HKEYS", self.keys.globals.pool_ids))]
        )
        for pool, hit in zip(targets, exists, strict=True):
            if not hit:
                raise PoolNotFoundError(f"Pool with ID {pool} does not exist.")
        yield from self._refuse_moves(groups, [UUID(text(p)) for p in registry])
        calls: list[Call] = []
        for pool, items in groups.items():
            for start in range(0, len(items), SAVE_CHUNK):
                chunk = items[start : start + SAVE_CHUNK]
                args: list[Any] = [len(chunk)]
                for item in chunk:
                    args.extend(item)
                calls.append(ScriptCall("save_proxies", self.keys.pool(pool), args))
        replies = yield Batch(calls)
        for reply in replies:
            if text(reply[0]) == "nopool":
                raise PoolNotFoundError("A pool was deleted while its proxies were being saved.")
        for pool, items in groups.items():
            for proxy_id, _, _ in items:
                self.remember(UUID(proxy_id), pool)
        return sum(len(items) for items in groups.values())

    def _refuse_moves(
        self, groups: dict[UUID, list[tuple[str, bytes, bytes]]], pools: list[UUID]
    ) -> Op[None]:
        checks: list[tuple[UUID, UUID, list[str]]] = []
        for target, items in groups.items():
            ids = [item[0] for item in items]
            for other in pools:
                if other != target:
                    for start in range(0, len(ids), 1000):
                        checks.append((target, other, ids[start : start + 1000]))
        if not checks:
            return
        replies = yield Batch(
            [Command(("HMGET", self.keys.pool(o).state, *ids)) for _, o, ids in checks]
        )
        for (target, other, ids), values in zip(checks, replies, strict=True):
            for proxy_id, value in zip(ids, values, strict=True):
                if value is not None:
                    raise ValueError(
                        f"proxy {proxy_id} belongs to pool {other}; delete it there before "
                        f"saving it into pool {target}"
                    )

    def require_proxy(self, proxy_id: Any) -> Op[Proxy]:
        """Return a proxy by id; ProxyNotFoundError when missing or not a UUID."""
        proxy = yield from self.get_proxy(proxy_id)
        if proxy is None:
            raise ProxyNotFoundError(f"Proxy {proxy_id!r} not found.")
        return proxy

    def get_proxy(self, proxy_id: Any) -> Op[Optional[Proxy]]:
        """Return a proxy by id, or None when missing or not a UUID."""
        uid = parse_uuid(proxy_id)
        if uid is None:
            return None
        for refresh in (False, True):
            pool_id = yield from self.locate(uid, refresh)
            if pool_id is None:
                return None
            proxy = yield from self.read_proxy(pool_id, uid)
            if proxy is not None:
                return proxy
        return None

    def list_proxies(self, pool_id: str) -> Op[list[Proxy]]:
        """Return every proxy in a pool, ordered by id."""
        uid = parse_uuid(pool_id)
        if uid is None:
            raise PoolNotFoundError(f"Pool {pool_id!r} not found.")
        pk = self.keys.pool(uid)
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

    def delete_proxy(self, proxy_id: str) -> Op[None]:
        """Delete a proxy by id; ProxyNotFoundError when missing or not a UUID."""
        uid = parse_uuid(proxy_id)
        for refresh in (False, True):
            if uid is None:
                break
            pool_id = yield from self.locate(uid, refresh)
            if pool_id is None:
                break
            pk = self.keys.pool(pool_id)
            (reply,) = yield one(ScriptCall("delete_proxy", (*pk, pk.health(uid)), (str(uid),)))
            if text(reply[0]) == "ok":
                self._proxy_pools.pop(uid, None)
                return
        raise ProxyNotFoundError(f"Proxy {proxy_id!r} not found.")

    # ------------------------------------------------------------------ leases (admin)

    def lease_location(self, lease_id: UUID) -> Op[Optional[tuple[UUID, str, Any]]]:
        """Return (pool id, pool name, record) of the pool holding a lease, or None."""
        pools = yield from self.pool_list()
        if not pools:
            return None
        ids = list(pools)
        raws = yield Batch(
            [Command(("HGET", self.keys.pool(p).leases, str(lease_id))) for p in ids]
        )
        for pool, raw in zip(ids, raws, strict=True):
            if raw is not None:
                return pool, pools[pool], raw
        return None

    def get_lease(self, lease_id: Any) -> Op[Optional[Lease]]:
        """Return a lease by id (active, or released within the retention), else None."""
        uid = parse_uuid(lease_id)
        if uid is None:
            return None
        found = yield from self.lease_location(uid)
        if found is None:
            return None
        pool_id, pool_name, raw = found
        return codec.decode_lease(uid, raw, pool_id, pool_name)

    def list_leases(self, consumer_id: Optional[str]) -> Op[list[Lease]]:
        """Return active and retained leases, optionally of one consumer."""
        wanted = None
        if consumer_id is not None:
            wanted = parse_uuid(consumer_id)
            if wanted is None:
                return []
        pools = yield from self.pool_list()
        ids = list(pools)
        if not ids:
            return []
        tables = yield Batch([Command(("HGETALL", self.keys.pool(p).leases)) for p in ids])
        out = []
        for pool, table in zip(ids, tables, strict=True):
            for lid, raw in table.items():
                if wanted is None or codec.lease_consumer(raw) == str(wanted):
                    out.append(codec.decode_lease(lid, raw, pool, pools[pool]))
        return sorted(out, key=lambda lease: lease.acquired_at)

    # ------------------------------------------------------------------ health

    def record_health(
        self, proxy_id: UUID, row: ProxyHealthRecord, apply: bool
    ) -> Op[Optional[Proxy]]:
        """Store a health record; with ``apply`` also set the proxy's status and checked_at.

        Raises ValueError for a field pharox's model would reject, or a latency that is not
        a number of milliseconds in ``0..codec.MAX_EXACT``.
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
            self.health_history,
        )
        for refresh in (False, True):
            pool_id = yield from self.locate(proxy_id, refresh)
            if pool_id is None:
                return None
            pk = self.keys.pool(pool_id)
            (reply,) = yield one(ScriptCall("health", (*pk, pk.health(proxy_id)), args))
            if text(reply[0]) == "ok":
                return codec.decode_proxy(str(proxy_id), pool_id, reply[1], reply[2], reply[3])
        return None

    def health_records(self, proxy_id: UUID, limit: int) -> Op[list[ProxyHealthRecord]]:
        """Return a proxy's most recent health records, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ValueError(f"limit must be an int, got {limit!r}")
        if limit <= 0:
            return []
        pool_id = yield from self.locate(proxy_id)
        if pool_id is None:
            return []
        pk = self.keys.pool(pool_id)
        (raws,) = yield one(Command(("ZREVRANGE", pk.health(proxy_id), 0, limit - 1)))
        return [codec.decode_health(proxy_id, raw) for raw in raws]

    def last_health_result(self, proxy_id: UUID) -> Op[Optional[HealthCheckResult]]:
        """Return the newest health result of a proxy, or None."""
        records = yield from self.health_records(proxy_id, 1)
        return codec.health_result(records[0]) if records else None

    def apply_health_check_result(self, result: HealthCheckResult) -> Op[Optional[Proxy]]:
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
        return (yield from self.record_health(result.proxy_id, row, apply=True))

    def save_health_record(self, record: ProxyHealthRecord) -> Op[None]:
        """Store an immutable health record; ProxyNotFoundError for an unknown proxy."""
        if not isinstance(record, ProxyHealthRecord):
            raise ValueError(f"expected a pharox ProxyHealthRecord, got {type(record).__name__}")
        proxy = yield from self.record_health(record.proxy_id, record, apply=False)
        if proxy is None:
            raise ProxyNotFoundError(f"Proxy {record.proxy_id} not found.")


class Stale:
    """Marker: the pool behind a cached name changed; resolve the name again."""


STALE = Stale()


def stats_snapshot(pool_name: str, counters: Sequence[Any]) -> PoolStatsSnapshot:
    """Build a PoolStatsSnapshot from the five pool counters."""
    total, active, available, leased, leases = (int(v or 0) for v in counters)
    return PoolStatsSnapshot.model_construct(
        pool_name=pool_name,
        total_proxies=total,
        active_proxies=active,
        available_proxies=available,
        leased_proxies=leased,
        total_leases=leases,
        collected_at=datetime.now(timezone.utc),
    )


def pool_model(pool_id: UUID, name: Any, description: Any) -> ProxyPool:
    """Build a ProxyPool from stored fields."""
    return ProxyPool.model_construct(
        id=pool_id, name=text(name), description=None if description is None else text(description)
    )
