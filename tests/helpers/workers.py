"""Worker processes for the fleet tests (``spawn`` needs them in an importable module).

Kept apart from the tests so a spawned child imports no pytest, only what it runs. Each is
started by :class:`~tests.helpers.fleet.Fleet`, which passes ``barrier`` (wait there, so all
workers start together) and ``results`` (the queue a worker puts its report on).

* :func:`lease_worker` leases, holds 0-2 ms and releases in a loop until its time is up, and
  reports every lease it was granted. Its ``kind`` says how: ``stock`` with pharox's stock
  ``ProxyManager`` (``acquire_proxy`` only: under contention it may raise
  ``ProxyUnavailableError``), ``redis`` with ``RedisProxyManager`` (every selector, and
  ``acquire_proxy``, ``acquire`` and ``with_proxy`` in turn), ``predicate`` the same with a
  Python predicate that rejects one port (the compare-and-lease path).
* :func:`victim` takes one lease and then sleeps holding it, to be killed with SIGKILL: it
  never releases and never reports (the parent finds its lease in Redis).
"""

from __future__ import annotations

import functools
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Optional, Union

from pharox import Lease, LeaseStatus, Proxy, ProxyFilters, ProxyManager, SelectorStrategy

from pharox_redis import LeasedProxy, RedisProxyManager, RedisStorage

START_TIMEOUT = 60.0
SELECTORS = tuple(SelectorStrategy)
MODES = ("acquire_proxy", "acquire", "with_proxy")
MAX_HOLD_SECONDS = 0.002

Manager = Union[ProxyManager, RedisProxyManager]


class WorkerCheckError(Exception):
    """A worker got a lease that is not what the manager promises."""


def not_on_port(port: int, proxy: Proxy) -> bool:
    return proxy.port != port


def _check_leased(leased: LeasedProxy) -> None:
    lease, proxy = leased.lease, leased.proxy
    if lease.status is not LeaseStatus.ACTIVE or lease.proxy_id != proxy.id:
        raise WorkerCheckError(f"{leased!r}: lease {lease!r} does not hold proxy {proxy.id}")
    limit = proxy.max_concurrency
    if proxy.current_leases < 1 or (limit is not None and proxy.current_leases > limit):
        raise WorkerCheckError(f"{leased!r}: current_leases={proxy.current_leases} of {limit}")


def _check_released(lease: Lease) -> None:
    if lease.released_at is None or lease.released_at < lease.acquired_at:
        raise WorkerCheckError(f"released {lease!r} has released_at={lease.released_at!r}")


def lease_once(
    manager: Manager,
    mode: str,
    pool_name: str,
    kwargs: dict[str, Any],
    hold: Callable[[], None],
) -> Optional[tuple[str, str]]:
    """Lease a proxy one way, hold it, release it; return (lease id, proxy id) or None."""
    if mode == "with_proxy":
        assert isinstance(manager, RedisProxyManager)
        with manager.with_proxy(pool_name, **kwargs) as leased:
            if leased is None:
                return None
            _check_leased(leased)
            hold()
        _check_released(leased.lease)
        return str(leased.lease.id), str(leased.proxy.id)
    if mode == "acquire":
        assert isinstance(manager, RedisProxyManager)
        got = manager.acquire(pool_name, **kwargs)
        if got is None:
            return None
        try:
            _check_leased(got)
            hold()
        finally:
            manager.release_proxy(got)
        _check_released(got.lease)
        return str(got.lease.id), str(got.proxy.id)
    lease = manager.acquire_proxy(pool_name, **kwargs)
    if lease is None:
        return None
    try:
        hold()
    finally:
        manager.release_proxy(lease)
    return str(lease.id), str(lease.proxy_id)


def lease_worker(
    kind: str,
    index: int,
    url: str,
    prefix: str,
    pool_name: str,
    seconds: float,
    *,
    barrier: Any,
    results: Any,
    lease_seconds: float = 30.0,
    retention: float = 3600.0,
    skip_port: Optional[int] = None,
    idle: float = 0.0,
) -> None:
    """Lease in a loop for ``seconds`` with a ``kind`` manager; put a report on ``results``.

    The report counts attempts, grants and misses (``none``), every exception by type
    (counted, never fatal) with the first message of each, the selectors and modes used,
    and lists (lease id, proxy id) of every lease granted. ``skip_port`` is the port a
    ``predicate`` worker rejects; ``idle`` how long to sleep after a miss.
    """
    out: dict[str, Any] = {
        "kind": kind,
        "worker": index,
        "attempts": 0,
        "granted": 0,
        "none": 0,
        "errors": Counter(),
        "messages": {},
        "leases": [],  # (lease id, proxy id)
        "selectors": Counter(),
        "modes": Counter(),
    }
    storage = None
    try:
        storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=retention)
        manager: Manager
        modes: tuple[str, ...]
        filters = None
        if kind == "stock":
            manager, modes = ProxyManager(storage), MODES[:1]
        elif kind in ("redis", "predicate"):
            manager, modes = RedisProxyManager(storage), MODES
            if kind == "predicate":
                assert skip_port is not None
                filters = ProxyFilters(predicate=functools.partial(not_on_port, skip_port))
        else:
            raise ValueError(f"unknown worker kind {kind!r}")
        rng = random.Random(index)

        def hold() -> None:
            time.sleep(rng.uniform(0, MAX_HOLD_SECONDS))

        consumer = f"{kind}-{index}"
        barrier.wait(timeout=START_TIMEOUT)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            selector = SELECTORS[(index + n) % len(SELECTORS)]
            mode = modes[n % len(modes)]  # 4 selectors x 3 modes: every pair every 12 turns
            n += 1
            out["attempts"] += 1
            out["selectors"][selector.value] += 1
            out["modes"][mode] += 1
            kwargs: dict[str, Any] = {
                "consumer_name": consumer,
                "duration_seconds": lease_seconds,
                "filters": filters,
                "selector": selector,
            }
            try:
                got = lease_once(manager, mode, pool_name, kwargs, hold)
            except Exception as exc:  # counted and reported, never fatal
                name = type(exc).__name__
                out["errors"][name] += 1
                out["messages"].setdefault(name, repr(exc)[:300])
                continue
            if got is None:
                out["none"] += 1
                time.sleep(idle)
                continue
            out["granted"] += 1
            out["leases"].append(got)
    except BaseException as exc:  # setup failed: report it rather than hang the parent
        out["errors"]["setup:" + type(exc).__name__] += 1
        out["messages"].setdefault("setup:" + type(exc).__name__, repr(exc)[:300])
    finally:
        if storage is not None:
            storage.client.close()
        for key in ("errors", "selectors", "modes"):
            out[key] = dict(out[key])
        results.put(out)


def victim(
    index: int,
    url: str,
    prefix: str,
    pool_name: str,
    lease_seconds: float,
    *,
    barrier: Any,
    results: Any,
    retention: float = 3600.0,
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


def batch_worker(
    kind: str,
    index: int,
    url: str,
    prefix: str,
    pool_name: str,
    seconds: float,
    *,
    barrier: Any,
    results: Any,
    lease_seconds: float = 30.0,
    retention: float = 3600.0,
) -> None:
    """Lease with ``rotate`` or ``acquire_many`` in a loop for ``seconds``; report as above.

    ``rotate``: hold one lease and rotate it on every turn (acquire afresh after a miss),
    releasing the last one at the end. ``many``: ``acquire_many`` of 1 to 3 leases, distinct
    or not, all-or-nothing every third turn, then ``release_many``. Both cycle through the
    selectors and take the Python-predicate path every fourth turn. ``granted`` counts
    leases, ``none`` the turns that got none.
    """
    out: dict[str, Any] = {
        "kind": kind,
        "worker": index,
        "attempts": 0,
        "granted": 0,
        "none": 0,
        "errors": Counter(),
        "messages": {},
        "leases": [],
        "selectors": Counter(),
    }
    storage = None
    try:
        storage = RedisStorage.from_url(url, prefix=prefix, lease_retention_seconds=retention)
        manager = RedisProxyManager(storage)
        anything = ProxyFilters(predicate=functools.partial(not_on_port, 0))
        rng = random.Random(index)
        current: Optional[LeasedProxy] = None
        barrier.wait(timeout=START_TIMEOUT)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            selector = SELECTORS[(index + n) % len(SELECTORS)]
            filters = anything if n % 4 == 3 else None
            n += 1
            out["attempts"] += 1
            out["selectors"][selector.value] += 1
            kwargs: dict[str, Any] = {
                "consumer_name": f"{kind}-{index}",
                "duration_seconds": lease_seconds,
                "filters": filters,
                "selector": selector,
            }
            try:
                if kind == "rotate":
                    if current is None:
                        current = manager.acquire(pool_name, **kwargs)
                    else:
                        current = manager.rotate(current, **kwargs)
                    got = [] if current is None else [current]
                else:
                    got = manager.acquire_many(
                        pool_name,
                        1 + n % 3,
                        **kwargs,
                        distinct=n % 2 == 0,
                        all_or_nothing=n % 3 == 0,
                    )
            except Exception as exc:  # counted and reported, never fatal
                name = type(exc).__name__
                out["errors"][name] += 1
                out["messages"].setdefault(name, repr(exc)[:300])
                current = None
                continue
            for leased in got:
                _check_leased(leased)
                out["leases"].append((str(leased.lease.id), str(leased.proxy.id)))
            out["granted"] += len(got)
            out["none"] += not got
            time.sleep(rng.uniform(0, MAX_HOLD_SECONDS))
            if kind == "many" and got:
                manager.release_many(got)
        if current is not None:
            manager.release_proxy(current)
    except BaseException as exc:  # report rather than hang the parent
        out["errors"]["setup:" + type(exc).__name__] += 1
        out["messages"].setdefault("setup:" + type(exc).__name__, repr(exc)[:300])
    finally:
        if storage is not None:
            storage.client.close()
        for key in ("errors", "selectors"):
            out[key] = dict(out[key])
        results.put(out)
