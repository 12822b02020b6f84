"""Calls bounded by a deadline: a Redis call that must not outlive the lease it serves.

redis-py bounds a call by its ``socket_timeout``, times its retries; a renewal must give up
when the lease's remaining time is up instead. :func:`call_within` runs a sync call in a
helper thread and stops waiting for it at the bound (the call itself ends at its socket
timeout, on a connection nobody waits for); :func:`await_within` does the same with a task.
Neither swallows a cancellation of the caller.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Awaitable, Callable, TypeVar

import redis

from .errors import RedisStorageError

T = TypeVar("T")


def too_late(seconds: float) -> RedisStorageError:
    """Return the error a call gets when it did not answer within ``seconds``."""
    exc = RedisStorageError(f"Redis did not answer within {max(seconds, 0.0):.3f} s")
    exc.__cause__ = redis.TimeoutError("no reply before the deadline")
    return exc


def call_within(call: Callable[[], T], seconds: float) -> T:
    """Return ``call()``, or raise :func:`too_late` when it takes more than ``seconds``."""
    if seconds <= 0:
        raise too_late(seconds)
    outcome: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the waiting caller
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=work, name="pharox-redis bounded call", daemon=True).start()
    if not done.wait(seconds):
        raise too_late(seconds)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


async def await_within(awaitable: Awaitable[T], seconds: float) -> T:
    """Return what ``awaitable`` gives, or raise :func:`too_late` after ``seconds``.

    The awaitable runs as a task of its own. At the bound it is left to finish (it ends at
    the client's socket timeout; a renewal that lands late still counts); when the caller
    is cancelled, so is the task, and the cancellation goes on up: ``asyncio.wait`` does
    not swallow it, as ``asyncio.wait_for`` can on Python 3.11.
    """
    if seconds <= 0:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: nothing is sent
        raise too_late(seconds)
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not task.done():
        task.add_done_callback(_retrieve)  # nobody awaits it any more
        raise too_late(seconds)
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Read an abandoned task's outcome, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
