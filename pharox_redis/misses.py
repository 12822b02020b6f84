"""Why an acquire found no proxy: the reason, where to read it, and one log line for it.

pharox's contract is that an acquire with nothing to lease returns None. The reason comes
with the same reply (``lua/acquire.lua`` adds it to a miss, so it costs no round trip):
a manager keeps the last one in a context variable, so each thread and each asyncio task
reads its own (:func:`last_miss`, ``manager.last_miss``), and it is logged on the
``pharox_redis`` logger at most once per pool and reason every ``LOG_INTERVAL_SECONDS``
(a polling loop does not flood the log): a warning for an unknown pool or a pool with no
ACTIVE proxy (nothing will change by waiting), debug for a busy pool, one cooling down,
proxies blocked for the target or a filter that matches nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional, Sequence

from .codec import text

log = logging.getLogger("pharox_redis")
LOG_INTERVAL_SECONDS = 60.0


class MissReason(str, Enum):
    """Why an acquire found no proxy to lease."""

    UNKNOWN_POOL = "unknown-pool"
    """No pool has that name (names are case-sensitive)."""
    NO_ACTIVE_PROXY = "no-active-proxy"
    """The pool has no ACTIVE proxy (none at all, or all INACTIVE: pharox's default)."""
    ALL_BUSY = "all-busy"
    """Every ACTIVE proxy holds as many leases as its ``max_concurrency`` allows."""
    COOLING_DOWN = "cooling-down"
    """None is free and some ACTIVE proxies are cooling down after failures (an outcome)."""
    BLOCKED_FOR_TARGET = "blocked-for-target"
    """Every free proxy is blocked for the acquire's ``target`` domain (``Outcome.blocked``)."""
    NO_MATCH = "no-match"
    """Proxies are available, but none matches the filters."""


@dataclass(frozen=True)
class AcquireMiss:
    """An acquire that returned None, and why.

    Attributes
    ----------
    pool_name:
        The pool asked for.
    reason:
        Why nothing was leased.
    proxies, active, available:
        The pool's proxies, how many of them are ACTIVE and how many could take a lease,
        as the acquire saw them (0 for an unknown pool).

    """

    pool_name: str
    reason: MissReason
    proxies: int = 0
    active: int = 0
    available: int = 0

    @classmethod
    def from_reply(cls, pool_name: str, fields: Sequence[Any]) -> AcquireMiss:
        """Build a miss from the fields ``acquire.lua`` adds to a miss (after 'miss')."""
        why, proxies, active, available = fields[:4]
        return cls(pool_name, MissReason(text(why)), int(proxies), int(active), int(available))

    def __str__(self) -> str:
        name = self.pool_name
        if self.reason is MissReason.UNKNOWN_POOL:
            return f"no pool is named {name!r}"
        if self.reason is MissReason.NO_ACTIVE_PROXY:
            if self.proxies == 0:
                return f"pool {name!r} has no proxies"
            return (
                f"pool {name!r} has {self.proxies} proxies and none is ACTIVE (a pharox Proxy "
                "is INACTIVE unless given status=ProxyStatus.ACTIVE)"
            )
        if self.reason is MissReason.ALL_BUSY:
            return f"all {self.active} ACTIVE proxies of pool {name!r} are fully leased"
        if self.reason is MissReason.COOLING_DOWN:
            return (
                f"no proxy of pool {name!r} is free and some of its {self.active} ACTIVE "
                "proxies are cooling down after failures"
            )
        if self.reason is MissReason.BLOCKED_FOR_TARGET:
            return f"all {self.available} free proxies of pool {name!r} are blocked for the target"
        return f"none of the {self.available} available proxies of pool {name!r} match the filters"


_last: ContextVar[Optional[AcquireMiss]] = ContextVar("pharox_redis_last_miss", default=None)
_logged: dict[tuple[str, MissReason], tuple[float, int]] = {}  # -> (last logged, suppressed)
_lock = threading.Lock()
_WARN = (MissReason.UNKNOWN_POOL, MissReason.NO_ACTIVE_PROXY)


def last_miss() -> Optional[AcquireMiss]:
    """Return why this thread's (or asyncio task's) last acquire missed; None if it leased."""
    return _last.get()


def noted(miss: Optional[AcquireMiss]) -> None:
    """Record the outcome of an acquire (None: it leased) and log a miss, rate limited."""
    _last.set(miss)
    if miss is None:
        return
    level = logging.WARNING if miss.reason in _WARN else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    key, now = (miss.pool_name, miss.reason), time.monotonic()
    with _lock:
        last, suppressed = _logged.get(key, (None, 0))
        if last is not None and now - last < LOG_INTERVAL_SECONDS:
            _logged[key] = (last, suppressed + 1)
            return
        if len(_logged) >= 10_000:
            _logged.clear()
        _logged[key] = (now, 0)
    more = f" ({suppressed} more such misses since the last message)" if suppressed else ""
    log.log(level, "acquire found no proxy: %s%s", miss, more)
