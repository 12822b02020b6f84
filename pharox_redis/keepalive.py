"""Keeping a lease alive in the background while a ``with`` block holds it.

What a keep-alive does is one flow, :func:`keep_alive`, shared by both managers: renew when a
third of the lease has gone by, bound every attempt by the time the lease has left, try
again after a failure while time is left, and give up at the local deadline
(``leased_proxy.py``). :class:`ThreadKeepAlive` performs it from a daemon thread for sync
code (the holder sees the loss at ``leased.check()`` and on leaving the block);
:class:`TaskKeepAlive` from a task for asyncio, where a loss also cancels the block.

Stopping never waits for Redis: a renewal in flight may still land after the block is left,
which is harmless (a renewal never brings back a released lease), and whatever it answers
is ignored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Awaitable, Callable, Optional

from pharox import Lease

from .errors import LeaseLostError, RedisStorageError
from .flows import Flow, Policy, Run, Sleep
from .leased_proxy import LeasedProxy
from .operations import leases
from .operations.batch import Op

RENEW_AT = 1 / 3  # of the duration gone by since the last renewal (or the acquire)
RETRY_PAUSES = 30  # after a failed attempt, wait a 30th of the duration (at most)
MIN_ATTEMPT_SECONDS = 0.002  # an attempt given less time than this is not made
STOP_WAIT_SECONDS = 0.05  # how long stopping waits for the keep-alive to end by itself


class Stopped(Exception):
    """Raised into a keep-alive's flow when its block is left."""


class Renewals:
    """When to renew a kept-alive lease, how long an attempt may take, when to give up.

    A lease is renewed once a third of its duration has gone by, leaving two thirds: an
    attempt may take at most half of what is left, so one that fails still leaves room for
    another. After a failure the next attempt follows shortly (a 30th of the duration, or a
    quarter of what is left), until the local deadline passes.

    Parameters
    ----------
    leased:
        The lease kept alive; its local deadline is what every wait is measured against.
    duration_seconds:
        Each renewal extends the lease to this many seconds from then.

    """

    def __init__(self, leased: LeasedProxy, duration_seconds: float) -> None:
        self.leased = leased
        self.duration = float(duration_seconds)
        self.failure: Optional[Exception] = None

    def pause(self) -> float:
        """Return the seconds to wait before the next attempt."""
        left = self.leased.remaining
        if self.failure is None:
            return max(0.0, left - (1 - RENEW_AT) * self.duration)
        if left / 2 < MIN_ATTEMPT_SECONDS:
            return left  # no time for another attempt: wait for the deadline
        return min(self.duration / RETRY_PAUSES, left / 4)

    def attempt_timeout(self) -> float:
        """Return the seconds the next attempt may take."""
        return self.leased.remaining / 2

    def loss(self) -> LeaseLostError:
        """Return the loss to report when the local deadline has passed."""
        reason = "its deadline passed: it could not be renewed"
        if self.failure is not None:
            reason += f" ({self.failure})"
        lost = LeaseLostError(self.leased.lease, reason)
        lost.__cause__ = self.failure
        return lost


def keep_alive(
    policy: Policy,
    leased: LeasedProxy,
    duration_seconds: float,
    sleep: Callable[[float], Any],
    record: Callable[[float, float], None],
) -> Flow[LeaseLostError]:
    """Renew a lease until ``sleep`` raises :class:`Stopped`; return the loss if it is lost.

    ``record(sent_at, duration_seconds)`` moves the lease's local deadline after a renewal;
    once the keep-alive is stopped it must do nothing (see :func:`renewal`).
    """
    renewals = Renewals(leased, duration_seconds)
    while True:
        yield Sleep(renewals.pause(), sleep)
        if leased.lost:  # the deadline passed while waiting (a blocked event loop, a stall)
            policy.observe("lost", leased.lease.pool_name)
            return renewals.loss()
        try:
            attempt = renewal(policy, leased, duration_seconds, record)
            yield Run(attempt, renewals.attempt_timeout())
        except LeaseLostError as told:  # the server says so: expired, released, pool gone
            policy.observe("lost", leased.lease.pool_name)
            return told
        except RedisStorageError as exc:  # no answer in time, or Redis refused: try again
            renewals.failure = exc
        except Exception as exc:  # anything else ends the renewals: say so
            broken = LeaseLostError(leased.lease, f"renewing it failed ({exc!r})")
            broken.__cause__ = exc
            return broken
        else:
            renewals.failure = None
            policy.observe("renewed", leased.lease.pool_name)


def renewal(
    policy: Policy,
    leased: LeasedProxy,
    duration_seconds: float,
    record: Callable[[float, float], None],
) -> Op[Lease]:
    """Renew a lease once and ``record`` it: move its local deadline, counted from when it was sent.

    The deadline moves inside the operation, so an attempt the keep-alive stopped waiting
    for still counts if it succeeds before the deadline, but not once the keep-alive is
    stopped: the block is being left, and its release is bounded by the deadline as it was
    (a late renewal moving it would turn that release's timeout into an error, when the
    lease is in fact over for the holder). The server's deadline is then the later one,
    which is the safe side.
    """
    sent_at = time.monotonic()
    lease = yield from leases.renew(policy.context, leased.lease, duration_seconds)
    record(sent_at, duration_seconds)
    return lease


class ThreadKeepAlive:
    """Perform :func:`keep_alive` from a daemon thread until stopped.

    Parameters
    ----------
    perform:
        The sync manager's step performer.
    policy, leased, duration_seconds:
        As for :func:`keep_alive`.

    """

    def __init__(
        self,
        perform: Callable[[Flow[LeaseLostError]], LeaseLostError],
        policy: Policy,
        leased: LeasedProxy,
        duration_seconds: float,
    ) -> None:
        self._leased = leased
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        flow = keep_alive(policy, leased, duration_seconds, self._wait, self._record)
        self._thread = threading.Thread(
            target=self._run,
            args=(perform, flow),
            name=f"pharox-redis keep-alive {leased.lease.id}",
            daemon=True,
        )
        self._thread.start()

    def _wait(self, seconds: float) -> None:
        if self._stopped.wait(seconds):
            raise Stopped

    def _record(self, sent_at: float, duration_seconds: float) -> None:
        with self._lock:
            if not self._stopped.is_set():
                self._leased.renewed(sent_at, duration_seconds)

    def _run(
        self, perform: Callable[[Flow[LeaseLostError]], LeaseLostError], flow: Flow[LeaseLostError]
    ) -> None:
        try:
            loss = perform(flow)
        except Stopped:
            return
        with self._lock:
            if not self._stopped.is_set():
                self._leased.mark_lost(loss)

    def stop(self) -> None:
        """Stop renewing; from now on nothing is recorded on the lease. Bounded."""
        with self._lock:
            self._stopped.set()
        self._thread.join(STOP_WAIT_SECONDS)


class TaskKeepAlive:
    """Perform :func:`keep_alive` from a task; cancel the holder's task on a loss.

    Parameters
    ----------
    perform:
        The async manager's step performer.
    policy, leased, duration_seconds:
        As for :func:`keep_alive`.

    """

    def __init__(
        self,
        perform: Callable[[Flow[LeaseLostError]], Awaitable[LeaseLostError]],
        policy: Policy,
        leased: LeasedProxy,
        duration_seconds: float,
    ) -> None:
        self.cancelled_body = False
        self._leased = leased
        self._stopping = False
        self._body: Optional[asyncio.Task[Any]] = asyncio.current_task()
        flow = keep_alive(policy, leased, duration_seconds, self._wait, self._record)
        self._task = asyncio.ensure_future(self._run(perform, flow))

    async def _wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._stopping:  # also when a cancellation was swallowed on the way
            raise Stopped

    def _record(self, sent_at: float, duration_seconds: float) -> None:
        if not self._stopping:
            self._leased.renewed(sent_at, duration_seconds)

    async def _run(
        self,
        perform: Callable[[Flow[LeaseLostError]], Awaitable[LeaseLostError]],
        flow: Flow[LeaseLostError],
    ) -> None:
        try:
            loss = await perform(flow)
        except Stopped:
            return
        if self._stopping:
            return
        self._leased.mark_lost(loss)
        if self._body is not None and not self._body.done():
            self.cancelled_body = True
            self._body.cancel()

    async def stop(self) -> None:
        """Stop renewing; from now on nothing is recorded on the lease. Bounded."""
        self._stopping = True
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=STOP_WAIT_SECONDS)
        if self._task.done() and not self._task.cancelled():
            self._task.exception()  # retrieved: an unexpected error must not be logged later
