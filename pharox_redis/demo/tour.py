"""The guided tour: every selector, filters, a predicate, ``with_proxy``, keep-alive, callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

from pharox import AcquireEventPayload, ProxyFilters, SelectorStrategy

from ..leased_proxy import LeasedProxy
from ..manager import RedisProxyManager
from ..storage import RedisStorage
from .pool import POOL_NAME, stats_line


def label(leased: Optional[LeasedProxy]) -> str:
    """Describe a leased proxy in a few words.

    Parameters
    ----------
    leased:
        A lease with its proxy, or None when nothing was available.

    Returns
    -------
    str
        ``url country/source`` (or ``none available``).

    """
    if leased is None:
        return "none available"
    proxy = leased.proxy
    return f"{leased.url} {proxy.country}/{proxy.source}"


def tour(storage: RedisStorage, say: Callable[[str], None]) -> None:
    """Lease from the demo pool with ``RedisProxyManager`` and give every lease back.

    Leases are held while the next ones are taken, so later picks move on: every selector,
    flat and nested filters, a Python predicate, a filter that matches only an inactive
    proxy, then ``with_proxy`` with a keep-alive and an acquire callback.

    Parameters
    ----------
    storage:
        A storage holding the demo pool (:func:`~pharox_redis.demo.pool.create_pool`).
    say:
        Where output lines go.

    """
    manager = RedisProxyManager(storage)
    held: list[LeasedProxy] = []

    def release_all() -> None:
        for lease in held:
            manager.release_proxy(lease)
        say(f"released {len(held)} leases: {stats_line(storage.get_pool_stats(POOL_NAME))}")
        held.clear()

    def hold(what: str, leased: Optional[LeasedProxy]) -> None:
        say(f"  {what:<26} -> {label(leased)}")
        if leased is not None:
            held.append(leased)

    say("RedisProxyManager, one round trip per acquire; leases held, so later picks move on:")
    for selector in SelectorStrategy:
        hold(selector.value, manager.acquire(POOL_NAME, "selectors", selector=selector))
    hold(
        "round_robin again",
        manager.acquire(POOL_NAME, "selectors", selector=SelectorStrategy.ROUND_ROBIN),
    )
    release_all()

    say("filters:")
    hold(
        "country=DE",
        manager.acquire(POOL_NAME, "filters", filters=ProxyFilters(country="DE")),
    )
    nested = ProxyFilters(
        any_of=[ProxyFilters(country="FR"), ProxyFilters(country="JP")],
        none_of=[ProxyFilters(source="datacenter"), ProxyFilters(source="residential")],
    )
    hold(
        "(FR or JP) and mobile only",
        manager.acquire(POOL_NAME, "filters", filters=nested, selector=SelectorStrategy.LEAST_USED),
    )
    with_auth = ProxyFilters(predicate=lambda p: p.credentials is not None)
    hold("predicate: has credentials", manager.acquire(POOL_NAME, "filters", filters=with_auth))
    hold(
        "BR/residential (INACTIVE)",
        manager.acquire(
            POOL_NAME, "filters", filters=ProxyFilters(country="BR", source="residential")
        ),
    )

    def on_acquire(event: AcquireEventPayload) -> None:
        say(
            f"  callback: {event.consumer_name} got "
            f"{'a lease' if event.lease else 'nothing'} in {event.duration_ms} ms; "
            f"{stats_line(event.pool_stats)}"
        )

    manager.register_acquire_callback(on_acquire)
    say("with_proxy (US, mobile; max_concurrency=1), a 0.6 s lease kept alive for 1 s:")
    us_mobile = ProxyFilters(country="US", source="mobile")
    with manager.with_proxy(
        POOL_NAME, "context", 0.6, filters=us_mobile, keep_alive=True
    ) as leased:
        say(f"  inside: {label(leased)}; a second lease on it finds nothing:")
        manager.acquire(POOL_NAME, "context", filters=us_mobile)
        if leased is not None:
            first_expiry = leased.lease.expires_at
            time.sleep(1.0)
            stored = storage.get_lease(str(leased.lease.id))
            say(
                f"  after 1 s: still {stored.status.value if stored else 'gone'}, expiry moved "
                f"{(leased.lease.expires_at - first_expiry).total_seconds():.1f} s by renewals"
            )
    say(f"after with_proxy: {stats_line(storage.get_pool_stats(POOL_NAME))}")

    release_all()
