"""Worker processes of the waiting tests (``spawn`` needs them in an importable module).

* :func:`wait_worker` loops ``acquire(wait=)`` - hold - release until its time is up, with
  the sync or the async manager, and reports every lease (lease id, proxy id, seconds
  waited), every None and every error;
* :func:`waiting_victim` joins a pool's wait queue and blocks there until it is killed.

Both are started by :class:`~tests.helpers.fleet.Fleet` (``barrier`` and ``results``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    RedisProxyManager,
    RedisStorage,
)

START_TIMEOUT = 60.0


def jain_index(counts: list[int]) -> float:
    """Jain's fairness index of per-worker counts: 1.0 when equal, 1/n when one takes all."""
    total = sum(counts)
    squares = sum(c * c for c in counts)
    return 0.0 if squares == 0 else total * total / (len(counts) * squares)


def _report(kind: str, index: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "worker": index,
        "leases": [],  # (lease id, proxy id, seconds waited)
        "none": 0,
        "errors": Counter(),
        "messages": {},
    }


def _failed(out: dict[str, Any], exc: BaseException) -> None:
    name = type(exc).__name__
    out["errors"][name] += 1
    out["messages"].setdefault(name, repr(exc)[:300])


def wait_worker(
    kind: str,
    index: int,
    url: str,
    prefix: str,
    pool_name: str,
    seconds: float,
    *,
    barrier: Any,
    results: Any,
    wait: float = 5.0,
    hold: float = 0.02,
    lease_seconds: float = 30.0,
    retention: float = 3600.0,
) -> None:
    """Acquire with ``wait``, hold ``hold`` s, release, for ``seconds``; report on ``results``.

    ``kind`` is ``sync`` (RedisProxyManager) or ``async`` (AsyncRedisProxyManager).
    """
    out = _report(kind, index)
    try:
        args = (out, url, prefix, pool_name, seconds, barrier, wait, hold, lease_seconds, retention)
        if kind == "sync":
            _sync_loop(*args)
        else:
            asyncio.run(_async_loop(*args))
    except BaseException as exc:  # setup failed: report it rather than hang the parent
        _failed(out, exc)
    finally:
        out["errors"] = dict(out["errors"])
        results.put(out)


def _sync_loop(
    out: dict[str, Any],
    url: str,
    prefix: str,
    pool_name: str,
    seconds: float,
    barrier: Any,
    wait: float,
    hold: float,
    lease_seconds: float,
    retention: float,
) -> None:
    storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=retention)
    manager = RedisProxyManager(storage)
    consumer = f"{out['kind']}-{out['worker']}"
    barrier.wait(timeout=START_TIMEOUT)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                leased = manager.acquire(pool_name, consumer, lease_seconds, wait=wait)
                if leased is None:
                    out["none"] += 1
                    continue
                waited = time.monotonic() - started
                time.sleep(hold)
                manager.release_proxy(leased)
            except Exception as exc:  # counted and reported, never fatal
                _failed(out, exc)
                continue
            out["leases"].append((str(leased.lease.id), str(leased.proxy.id), waited))
    finally:
        storage.client.close()


async def _async_loop(
    out: dict[str, Any],
    url: str,
    prefix: str,
    pool_name: str,
    seconds: float,
    barrier: Any,
    wait: float,
    hold: float,
    lease_seconds: float,
    retention: float,
) -> None:
    storage = AsyncRedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=retention)
    manager = AsyncRedisProxyManager(storage)
    consumer = f"{out['kind']}-{out['worker']}"
    barrier.wait(timeout=START_TIMEOUT)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                leased = await manager.acquire(pool_name, consumer, lease_seconds, wait=wait)
                if leased is None:
                    out["none"] += 1
                    continue
                waited = time.monotonic() - started
                await asyncio.sleep(hold)
                await manager.release_proxy(leased)
            except Exception as exc:  # counted and reported, never fatal
                _failed(out, exc)
                continue
            out["leases"].append((str(leased.lease.id), str(leased.proxy.id), waited))
    finally:
        await storage.aclose()


def waiting_victim(
    index: int,
    url: str,
    prefix: str,
    pool_name: str,
    *,
    barrier: Any,
    results: Any,
    wait: float = 60.0,
) -> None:
    """Join the pool's wait queue as ``victim-<index>`` and block there until killed."""
    storage = RedisStorage.from_url(url, prefix=prefix)
    manager = RedisProxyManager(storage)
    barrier.wait(timeout=START_TIMEOUT)
    manager.acquire(pool_name, f"victim-{index}", 30, wait=wait)
    time.sleep(START_TIMEOUT)  # the parent kills us long before this ends
