"""Riding out a failover: send a batch again while the deployment changes its master.

When a master dies, Sentinel needs a few seconds to promote a replica, a Redis Cluster about
its node timeout. Meanwhile a batch meets refused connections, ``MasterNotFoundError``,
``READONLY`` from a demoted master, or a cluster's ``MOVED``/``TRYAGAIN``/``CLUSTERDOWN``.
:func:`resend` and :func:`aresend` send it again, each time on a fresh connection, after a
pause that grows from 50 ms to 1 s, until ``timeout`` seconds have passed; every script is
idempotent, so a batch sent twice changes nothing twice. The Sentinel executors live here;
the cluster executors (``cluster.py``) use the same loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar

import redis
from redis.exceptions import ReadOnlyError

from .executor import AsyncExecutor, BatchPlan, Executor
from .operations.batch import Call

T = TypeVar("T")
DEFAULT_FAILOVER_TIMEOUT = 15.0  # Redis's default cluster-node-timeout, plus an election
FIRST_PAUSE = 0.05
LONGEST_PAUSE = 1.0
# How a master that is going away answers (MasterNotFoundError is a ConnectionError).
GOING = (redis.ConnectionError, redis.TimeoutError, ReadOnlyError)


def pauses(timeout: float) -> Iterator[float]:
    """Yield the pauses between attempts while a failover may still be going on."""
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while time.monotonic() + pause < deadline:
        yield pause
        pause = min(pause * 2, LONGEST_PAUSE)


def resend(
    attempt: Callable[[], T],
    timeout: float,
    errors: tuple[type[Exception], ...] = GOING,
    refresh: Callable[[], Any] = lambda: None,
) -> T:
    """Return ``attempt()``; while it fails with ``errors``, ``refresh`` and try again."""
    waits = pauses(timeout)
    while True:
        try:
            return attempt()
        except errors:
            pause = next(waits, None)
            if pause is None:
                raise
            time.sleep(pause)
            refresh()


async def aresend(
    attempt: Callable[[], Awaitable[T]],
    timeout: float,
    errors: tuple[type[Exception], ...] = GOING,
    refresh: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """Return ``await attempt()``, as :func:`resend` does for a sync attempt."""
    waits = pauses(timeout)
    while True:
        try:
            return await attempt()
        except errors:
            pause = next(waits, None)
            if pause is None:
                raise
            await asyncio.sleep(pause)
            if refresh is not None:
                await refresh()


class Resending(BatchPlan):
    """What the executors that send a batch again through a failover share: for how long.

    Parameters
    ----------
    client:
        The redis-py client the executor sends through.
    failover_timeout:
        Seconds a batch is sent again while the deployment changes its master.
    functions:
        Use the function library where the server has it (see ``executor.py``).

    """

    def __init__(
        self,
        client: Any,
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
        functions: bool = True,
    ) -> None:
        super().__init__(client, functions)
        self.failover_timeout = failover_timeout


class SentinelExecutor(Resending, Executor):
    """Run operations on the master a Sentinel names (``Sentinel.master_for(...)``).

    Its client finds the new master by itself when it connects again; this executor sends a
    batch again, on a fresh connection, until the new master answers.
    """

    def send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send the calls; resend while the master is being replaced."""
        return resend(lambda: self.send_to(self.client, calls, atomic), self.failover_timeout)


class AsyncSentinelExecutor(Resending, AsyncExecutor):
    """The asyncio twin of :class:`SentinelExecutor`."""

    async def send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send the calls; resend while the master is being replaced."""
        return await aresend(
            lambda: self.send_to(self.client, calls, atomic), self.failover_timeout
        )
