"""The one place where Redis key names are built.

Every key has the configurable prefix. A pool's keys share the hash tag ``{p:<pool-uuid>}``,
built from the pool's UUID and never from its user-supplied name, so each pool lives in one
cluster slot and its scripts run on one node. The global registries of a prefix share the
tag ``{<prefix>:global}``.
"""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

_POOL_CACHE_LIMIT = 10_000


class PoolKeys(NamedTuple):
    """The keys of one pool, in the order every pool script receives them.

    This is their one definition: ``scripts.py`` binds ``KEYS[i]`` to a Lua local named after
    each field (``K_META``, ``K_STATE``, ...), so Python and Lua cannot disagree on the order.

    * ``meta`` hash: name, description, ``active`` (how many proxies are ACTIVE), ``sched``
      (where the pool's cleanup entry is at the latest), for each availability set
      ``set:<set>`` ('r' when ready, an HSCAN cursor while it is built, absent when it is
      not kept) and ``used:<set>`` (when a selector last used it, server seconds), ``cool``
      (a lower bound of every end in ``cooling`` and ``blocked``, see ``lua/_outcome.lua``)
      and ``wq`` ('1' while the wait queue may hold waiters).
    * ``state`` hash: proxy id -> JSON of every field Lua reads (``codec.ProxyState``).
    * ``counts`` hash: proxy id -> current lease count (absent when 0).
    * ``records`` hash: proxy id -> msgpack of host, port, protocol, credentials.
    * ``first``, ``least``, ``rr``, ``latency`` zsets: the available proxies in each
      selector's order, kept only once the pool has been asked for that selector (see
      ``lua/_pool.lua``). Scores and members: ``first`` -checked_at_us and id; ``least``
      lease count and ``<checked18><id>``; ``rr`` 0 and id (lexicographic = UUID order);
      ``latency`` the last reachable latency in ms (``inf`` for none) and id. To add a
      selector, see the note at the top of ``lua/_select.lua``.
    * ``cursor`` string: id of the proxy ``ROUND_ROBIN`` handed out last.
    * ``deadlines`` zset: the lease records' time line: active lease id -> expires_at in
      microseconds (server clock); released lease id -> purge time + 0.5.
    * ``leases`` hash: lease id -> JSON {proxy, consumer, acquired, expires, released,
      ``o`` once an outcome was applied with its release}.
    * ``cooling`` zset: proxy id -> end of its cool-down in microseconds (server clock): the
      proxies a failure outcome took out of the availability sets (their state holds the
      same end as ``k``), put back by a bounded step of acquire and reclaim once it passed.
    * ``blocked`` zset: ``<domain> <proxy id>`` -> end of the block in microseconds: an
      acquire with ``target=<domain>`` skips the proxy until then; expired entries are
      pruned in bounded steps. Pools created before these two keys simply have neither.
    * ``addresses`` hash: a proxy's address (``<protocol>://<host>:<port>[ <user>]``, host in
      lower case) -> the id of the one proxy of the pool holding it (see
      ``lua/_address.lua``); meta field ``addr`` says whether it is complete.
    * ``waiters`` zset: the wait queue of ``acquire(..., wait=)``: waiter id -> when it
      joined (server microseconds; FIFO order, a waiter whose predicate declined a proxy
      keeps its score). See ``lua/_wait.lua``.
    * ``waiting`` hash: waiter id -> JSON {f: filter JSON (``filters.py``), t: target domain
      (``''`` for none), c: consumer id, d: lease duration us, x: wait deadline us (server
      clock), k: the channel its hand-off is published on
      (:meth:`KeySchema.handoff_channel`), l: the lease id to create, p: its pickup time us}.
    """

    meta: str
    state: str
    counts: str
    records: str
    first: str
    least: str
    rr: str
    latency: str
    cursor: str
    deadlines: str
    leases: str
    cooling: str
    blocked: str
    addresses: str
    waiters: str
    waiting: str

    @property
    def tag(self) -> str:
        """Return the key prefix shared by all of this pool's keys."""
        return self.meta[: -len("meta")]

    @property
    def legacy_history(self) -> str:
        """Return the released-lease zset of 0.1.0 (now part of ``deadlines``)."""
        return f"{self.tag}history"

    def health(self, proxy_id: UUID | str) -> str:
        """Return the key of a proxy's health history."""
        return f"{self.tag}health:{proxy_id}"


class GlobalKeys(NamedTuple):
    """Registries that span pools, under one hash tag of their own per prefix.

    * ``pool_ids`` / ``pool_names`` hashes: pool id <-> name.
    * ``consumers`` hash: consumer name -> id.
    * ``deadlines`` zset: pool id -> the earliest deadline it may hold (cleanup's index).
    * ``claims`` hash: pool id -> the claim of the cleaner visiting it (see ``lua/due.lua``).
    """

    pool_ids: str
    pool_names: str
    consumers: str
    deadlines: str
    claims: str

    @classmethod
    def under(cls, tag: str) -> GlobalKeys:
        """Return the registries whose names start with ``tag``."""
        return cls(*(tag + field.replace("_", "-") for field in cls._fields))


class KeySchema:
    """Build every key the storage uses from one prefix.

    Parameters
    ----------
    prefix:
        Namespace for all keys (default ``pharox``). Two storages with different prefixes
        never see each other's data. It may not contain ``{`` or ``}``, which would change
        the cluster hash tags.

    """

    def __init__(self, prefix: str = "pharox") -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without '{{' or '}}', got {prefix!r}")
        self.prefix = prefix
        self._pools: dict[UUID | str, PoolKeys] = {}
        # The prefix is inside the hash tag, so each tenant's registries live in a slot of
        # their own and tenants spread over a cluster's masters.
        self.globals = GlobalKeys.under(f"{prefix}:{{{prefix}:global}}:")
        # Where they were until 0.1.0: one slot for every prefix (``migrate`` moves them).
        self.legacy_globals = GlobalKeys.under(f"{prefix}:{{global}}:")

    def handoff_channel(self, subscriber_id: UUID | str) -> str:
        """Return the pub/sub channel a waiting subscriber listens on for its hand-offs.

        A channel, not a key: ``PUBLISH`` in a pool script names no key, so the scripts'
        KEYS stay exactly the pool's keys (on a Redis Cluster a publish reaches every node).
        """
        return f"{self.prefix}:handoff:{subscriber_id}"

    def pool(self, pool_id: UUID | str) -> PoolKeys:
        """Return the keys of the pool with this id (cached: every lease call needs them)."""
        cached = self._pools.get(pool_id)
        if cached is None:
            tag = f"{self.prefix}:{{p:{pool_id}}}:"
            cached = PoolKeys(*(tag + field for field in PoolKeys._fields))
            if len(self._pools) >= _POOL_CACHE_LIMIT:
                self._pools.clear()
            self._pools[pool_id] = cached
        return cached
