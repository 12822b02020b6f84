"""``LeasedProxy``: a lease together with the proxy it holds, and its local deadline.

The server ends a lease at its deadline on the Redis clock. The holder keeps a deadline of
its own on the monotonic clock, measured conservatively: from when the acquire (or the last
successful renewal) was *sent*, plus the duration, minus a safety margin. The server stamps
its deadline after it receives the request, so the local one always falls first: a holder
cut off from Redis knows it lost its proxy before anyone else can be given it, with no I/O.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from pharox import Lease, Proxy

from .errors import LeaseLostError
from .outcome import Outcome, check_outcome

SAFETY_FRACTION = 0.01  # of the duration: client and server clocks may run at other rates
SAFETY_MIN_SECONDS = 0.005


def local_deadline(sent_at: float, duration_seconds: float) -> float:
    """Return when a lease sent at ``sent_at`` (monotonic) must be taken as over.

    The margin is 1% of the duration (at least 5 ms): the monotonic clock of the client and
    the wall clock of the server may run at slightly different rates (NTP keeps them within
    0.05% of each other).
    """
    margin = max(SAFETY_MIN_SECONDS, SAFETY_FRACTION * duration_seconds)
    return sent_at + duration_seconds - margin


class LeasedProxy:
    """A lease and its proxy, as one acquire returns them.

    Parameters
    ----------
    lease:
        The pharox lease (its ``expires_at`` moves forward when the lease is renewed).
    proxy:
        The leased proxy as it was when leased: host, port, protocol and credentials.
    deadline:
        The local deadline on ``clock`` (see :func:`local_deadline`); by default the lease
        counts as held until told otherwise.
    clock:
        The monotonic clock the deadline is on (tests may replace it).

    """

    __slots__ = ("_clock", "_deadline", "_lost", "_outcome", "lease", "proxy")

    def __init__(
        self,
        lease: Lease,
        proxy: Proxy,
        deadline: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.proxy = proxy
        self._deadline = deadline
        self._clock = clock
        self._lost: Optional[LeaseLostError] = None
        self._outcome: Optional[Outcome] = None

    @property
    def url(self) -> str:
        """Return the proxy URL with credentials, e.g. ``http://user:pw@10.0.0.1:8080``."""
        return self.proxy.url

    @property
    def deadline(self) -> float:
        """Return the local deadline, on the monotonic clock."""
        return self._deadline

    @property
    def remaining(self) -> float:
        """Return the seconds left before the local deadline (0 once lost)."""
        if self._lost is not None:
            return 0.0
        return max(0.0, self._deadline - self._clock())

    @property
    def lost(self) -> bool:
        """Return True once the lease is no longer held, or its local deadline has passed."""
        return self._lost is not None or self._clock() >= self._deadline

    def check(self) -> None:
        """Raise :class:`~pharox_redis.errors.LeaseLostError` if the lease is not held.

        No I/O: call it between units of work. It raises once the local deadline has passed
        (a keep-alive that cannot reach Redis stops moving it), or once a renewal or a
        release found the lease over.
        """
        if self._lost is not None:
            raise self._lost
        if self._clock() >= self._deadline:
            raise LeaseLostError(self.lease, "its deadline passed")

    def renewed(self, sent_at: float, duration_seconds: float) -> None:
        """Move the local deadline after a renewal sent at ``sent_at`` succeeded.

        A lease once lost stays lost: a renewal answered after the local deadline does not
        bring it back, since the holder may already have acted on the loss.
        """
        if not self.lost:
            self._deadline = max(self._deadline, local_deadline(sent_at, duration_seconds))

    @property
    def outcome(self) -> Optional[Outcome]:
        """Return the outcome reported last (:meth:`report`), or None."""
        return self._outcome

    def report(self, outcome: Optional[Outcome]) -> None:
        """Record what happened through the proxy; it is sent with the release.

        Leaving a ``with_proxy`` block, or ``release_proxy(leased)`` without an outcome of
        its own, releases the lease with the outcome reported last (None takes it back).
        No I/O.
        """
        self._outcome = check_outcome(outcome)

    def mark_lost(self, error: LeaseLostError) -> None:
        """Record that the lease is lost (the first loss recorded is kept)."""
        if self._lost is None:
            self._lost = error

    def __repr__(self) -> str:
        return f"LeasedProxy(lease={self.lease.id}, proxy={self.proxy.host}:{self.proxy.port})"
