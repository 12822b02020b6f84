"""Keeping a lease alive in the background while a ``with`` block holds it.

:class:`KeepAliveState` is the policy both managers share: when to renew and when to give
the lease up. :class:`ThreadKeepAlive` applies it from a daemon thread for sync code,
:class:`TaskKeepAlive` from a task for asyncio, where a lost lease cancels the block.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Awaitable, Callable, Optional

from .errors import LeaseLostError, RedisStorageError
from .leased_proxy import LeasedProxy


class KeepAliveState:
    """When to renew a kept-alive lease and when to give it up.

    A lease is renewed to ``duration`` from now every ``duration / 3`` seconds. A renewal
    that finds the lease lost marks it lost at once; renewals that fail for lack of Redis
    mark it lost once the last successful renewal is ``duration`` old, because by then the
    lease has expired on the server.

    Parameters
    ----------
    leased:
        The lease to keep alive; a loss is recorded on it.
    duration_seconds:
        Each renewal extends the lease to this many seconds from then.
    clock:
        Monotonic clock (tests may replace it).

    """

    def __init__(
        self,
        leased: LeasedProxy,
        duration_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leased = leased
        self.duration = float(duration_seconds)
        self.interval = max(0.01, self.duration / 3)
        self.clock = clock
        self.renewed_at = clock()

    def renewed(self) -> None:
        """Note a successful renewal."""
        self.renewed_at = self.clock()

    def failed(self, exc: Exception) -> bool:
        """Note a failed renewal; return True when the lease is now known to be lost."""
        if isinstance(exc, LeaseLostError):
            self.leased.mark_lost(exc)
            return True
        if self.clock() - self.renewed_at >= self.duration:
            lost = LeaseLostError(self.leased.lease, f"it could not be renewed in time ({exc})")
            lost.__cause__ = exc
            self.leased.mark_lost(lost)
            return True
        return False


class ThreadKeepAlive:
    """Renew a lease from a daemon thread until stopped or lost.

    Parameters
    ----------
    state:
        The lease and its renewal policy.
    renew:
        Renews the lease once (the manager's ``renew_lease``).

    """

    def __init__(self, state: KeepAliveState, renew: Callable[[], Any]) -> None:
        self.state = state
        self._renew = renew
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._loop,
            name=f"pharox-redis keep-alive {state.leased.lease.id}",
            daemon=True,
        )
        self._thread.start()

    def _loop(self) -> None:
        state = self.state
        while not self._stopped.wait(state.interval):
            try:
                self._renew()
            except (LeaseLostError, RedisStorageError) as exc:
                if state.failed(exc):
                    return
            else:
                state.renewed()

    def stop(self) -> None:
        """Stop renewing and wait for the thread."""
        self._stopped.set()
        self._thread.join()


class TaskKeepAlive:
    """Renew a lease from a task; cancel the holder's task when the lease is lost.

    Parameters
    ----------
    state:
        The lease and its renewal policy.
    renew:
        Renews the lease once (the manager's ``renew_lease``).

    """

    def __init__(self, state: KeepAliveState, renew: Callable[[], Awaitable[Any]]) -> None:
        self.state = state
        self.cancelled_body = False
        self._renew = renew
        self._body: Optional[asyncio.Task[Any]] = asyncio.current_task()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        state = self.state
        while True:
            await asyncio.sleep(state.interval)
            try:
                await self._renew()
            except (LeaseLostError, RedisStorageError) as exc:
                if state.failed(exc):
                    if self._body is not None:
                        self.cancelled_body = True
                        self._body.cancel()
                    return
            else:
                state.renewed()

    async def stop(self) -> None:
        """Stop renewing."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
