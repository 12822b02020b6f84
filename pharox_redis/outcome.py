"""What happened through a leased proxy, reported with its release, and what the pool does with it.

An :class:`Outcome` goes with ``release_proxy(lease, outcome=...)`` (or ``leased.report``
inside a ``with_proxy`` block) and is applied in the same ``lua/release.lua`` call as the
release, atomically:

* ``Outcome.ok(latency_ms)``: the proxy worked. Its latency average (an EWMA, see
  :attr:`OutcomePolicy.latency_alpha`) moves toward ``latency_ms``: ``LOWEST_LATENCY`` orders
  by it. Its consecutive failure count goes back to 0 and a cool-down it is in ends.
* ``Outcome.failed()``: the connection failed or timed out. The proxy is cooled down: skipped
  by every acquire for ``base_seconds * 2 ** (failures - 1)`` (at most ``max_seconds``), then
  tried again; at ``max_failures`` consecutive failures it is marked INACTIVE instead.
* ``Outcome.blocked(domain)``: a target site refused it (403, 429 or a caller's rule). Acquires
  naming that ``target`` domain skip the proxy for ``block_seconds``; others still get it.

:class:`OutcomePolicy` holds the settings; a storage takes one (``outcomes=``) and sends it
with every release that carries an outcome.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from pharox import PoolStatsSnapshot

from .codec import MAX_EXACT

OK, FAILED, BLOCKED = "ok", "failed", "blocked"
KINDS = (OK, FAILED, BLOCKED)
MAX_DOMAIN_LENGTH = 253
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def normalize_domain(domain: Any, what: str = "domain") -> str:
    """Return a target domain in the form the pool stores it: lowercase, no trailing dot.

    A host name (letters, digits, ``-`` and ``_`` in dot-separated labels of 1 to 63
    characters; international names are taken in their IDNA form) or an IP address.

    Raises
    ------
    ValueError
        For anything else: not a str, empty, with a scheme, a port, a path or whitespace.

    """
    if not isinstance(domain, str):
        raise ValueError(f"{what} must be a str, got {type(domain).__name__}")
    name = domain.lower()
    if name.endswith("."):
        name = name[:-1]
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{what} is not a valid host name: {domain!r}") from None
    labels = name.split(".")
    if len(name) > MAX_DOMAIN_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{what} must be a host name (labels of letters, digits, '-' or '_') or an IP "
            f"address, without scheme, port or path, got {domain!r}"
        )
    return name


@dataclass(frozen=True)
class Outcome:
    """What happened through a leased proxy: :meth:`ok`, :meth:`failed` or :meth:`blocked`.

    Attributes
    ----------
    kind:
        ``"ok"``, ``"failed"`` or ``"blocked"``.
    latency_ms:
        For ``ok``: the request's latency in milliseconds.
    domain:
        For ``blocked``: the target domain, normalised (see :func:`normalize_domain`).

    """

    kind: str
    latency_ms: Optional[float] = None
    domain: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Outcome kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == OK:
            value = self.latency_ms
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0 <= value <= MAX_EXACT
            ):
                raise ValueError(
                    f"latency_ms must be a finite number of milliseconds in 0..{MAX_EXACT}, "
                    f"got {value!r}"
                )
        elif self.latency_ms is not None:
            raise ValueError(f"a {self.kind!r} outcome has no latency_ms")
        if self.kind == BLOCKED:
            object.__setattr__(self, "domain", normalize_domain(self.domain))
        elif self.domain is not None:
            raise ValueError(f"a {self.kind!r} outcome has no domain")

    @classmethod
    def ok(cls, latency_ms: float) -> Outcome:
        """Return the outcome of a request that went through, in ``latency_ms``."""
        return cls(OK, latency_ms=latency_ms)

    @classmethod
    def failed(cls) -> Outcome:
        """Return the outcome of a connection that failed or timed out."""
        return cls(FAILED)

    @classmethod
    def blocked(cls, domain: str) -> Outcome:
        """Return the outcome of a target ``domain`` refusing the proxy (403, 429, ...)."""
        return cls(BLOCKED, domain=domain)

    def value(self) -> str:
        """Return what ``lua/release.lua`` receives with the kind: latency or domain."""
        if self.kind == OK:
            return repr(float(self.latency_ms or 0.0))
        return self.domain or ""


def check_outcome(outcome: Any) -> Optional[Outcome]:
    """Return ``outcome`` if it is None or an :class:`Outcome`, else raise ValueError."""
    if outcome is not None and not isinstance(outcome, Outcome):
        raise ValueError(
            "outcome must be an Outcome (Outcome.ok(ms), Outcome.failed(), "
            f"Outcome.blocked(domain)) or None, got {type(outcome).__name__}"
        )
    return outcome


def _seconds(value: Any, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and minimum <= value <= 365 * 24 * 3600):
        raise ValueError(f"{name} must be a finite number of seconds in [{minimum:g}, 1 year]")
    return float(value)


@dataclass(frozen=True)
class OutcomePolicy:
    """How a pool reacts to the outcomes reported with releases (one per storage).

    Parameters
    ----------
    base_seconds:
        The cool-down after a first consecutive failure (default 1 s); each further
        failure doubles it: ``base_seconds * 2 ** (failures - 1)``.
    max_seconds:
        The longest cool-down (default 300 s).
    max_failures:
        At this many consecutive failures the proxy is marked INACTIVE instead of cooled
        down (default 10; None: never). A success, or saving or health-checking it back to
        ACTIVE, starts the count again.
    block_seconds:
        How long ``Outcome.blocked(domain)`` keeps a proxy out of acquires for that
        ``target`` (default 300 s).
    latency_alpha:
        The weight of a new latency in the average ``LOWEST_LATENCY`` orders by (default
        0.3): ``avg = alpha * latency + (1 - alpha) * avg``, kept in whole milliseconds; the
        first latency known (from a health check or an outcome) starts it.

    """

    base_seconds: float = 1.0
    max_seconds: float = 300.0
    max_failures: Optional[int] = 10
    block_seconds: float = 300.0
    latency_alpha: float = 0.3

    def __post_init__(self) -> None:
        _seconds(self.base_seconds, "base_seconds", 0.001)
        _seconds(self.max_seconds, "max_seconds", self.base_seconds)
        _seconds(self.block_seconds, "block_seconds", 0.001)
        m = self.max_failures
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"max_failures must be an int >= 1 or None, got {m!r}")
        a = self.latency_alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a <= 1:
            raise ValueError(f"latency_alpha must be a number in (0, 1], got {a!r}")

    def args(self) -> tuple[str, int, int, int, int]:
        """Return the settings as ``lua/release.lua`` takes them (microseconds)."""
        return (
            repr(float(self.latency_alpha)),
            round(self.base_seconds * 1_000_000),
            round(self.max_seconds * 1_000_000),
            self.max_failures or 0,
            round(self.block_seconds * 1_000_000),
        )


DEFAULT_POLICY = OutcomePolicy()


class OutcomeStats(NamedTuple):
    """A pool's counters and what outcomes did to it, read in one atomic call.

    Attributes
    ----------
    stats:
        pharox's snapshot, as ``get_pool_stats`` returns it (a proxy in a cool-down counts
        as active, not as available).
    cooling:
        Proxies in a cool-down after failures (out of every acquire until it ends).
    blocked:
        Blocks for a domain in force (one per domain and proxy).

    """

    stats: PoolStatsSnapshot
    cooling: int
    blocked: int
