"""Worker processes for ``test_faults.py`` (``spawn`` needs them in an importable module).

Kept apart from the test module so a spawned child imports no pytest, only what it runs.

* :func:`survivor` leases and releases in a loop until its time is up and reports every
  lease it was granted;
* :func:`victim` takes one lease and then sleeps holding it, to be killed with SIGKILL: it
  never releases and never reports (the parent finds its lease in Redis).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from pharox import SelectorStrategy

from pharox_redis import RedisProxyManager, RedisStorage

START_TIMEOUT = 60.0
SELECTORS = tuple(SelectorStrategy)
MAX_HOLD_SECONDS = 0.002


def survivor(
    index: int,
    url: str,
    prefix: str,
    retention: float,
    pool_name: str,
    lease_seconds: float,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """Lease, hold 0-2 ms and release for ``seconds``; put a report on ``results``.

    The report lists (lease id, proxy id) of every lease granted, how many acquires found
    nothing free, and every exception by type (counted, never fatal).
    """
    out: dict[str, Any] = {
        "worker": index,
        "granted": 0,
        "none": 0,
        "errors": Counter(),
        "messages": {},
        "leases": [],
    }
    storage = None
    try:
        storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=retention)
        manager = RedisProxyManager(storage)
        rng = random.Random(index)
        consumer = f"survivor-{index}"
        barrier.wait(timeout=START_TIMEOUT)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            selector = SELECTORS[(index + n) % len(SELECTORS)]
            n += 1
            try:
                with manager.with_proxy(
                    pool_name, consumer, lease_seconds, selector=selector
                ) as leased:
                    if leased is not None:
                        time.sleep(rng.uniform(0, MAX_HOLD_SECONDS))
                if leased is None:
                    out["none"] += 1
                    time.sleep(0.001)  # all proxies taken: let the others run
                else:
                    out["granted"] += 1
                    out["leases"].append((str(leased.lease.id), str(leased.proxy.id)))
            except Exception as exc:
                name = type(exc).__name__
                out["errors"][name] += 1
                out["messages"].setdefault(name, repr(exc)[:300])
    except BaseException as exc:  # setup failed: report it rather than hang the parent
        out["errors"]["setup:" + type(exc).__name__] += 1
        out["messages"].setdefault("setup", repr(exc)[:300])
    finally:
        if storage is not None:
            storage.client.close()
        out["errors"] = dict(out["errors"])
        results.put(out)


def victim(
    index: int,
    url: str,
    prefix: str,
    retention: float,
    pool_name: str,
    lease_seconds: float,
    barrier: Any,
) -> None:
    """Take one lease as consumer ``victim-<index>``, then hold it until killed."""
    storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=retention)
    manager = RedisProxyManager(storage)
    barrier.wait(timeout=START_TIMEOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if manager.acquire_proxy(pool_name, f"victim-{index}", lease_seconds) is not None:
            break
        time.sleep(0.001)
    time.sleep(START_TIMEOUT)  # the parent kills us long before this ends
