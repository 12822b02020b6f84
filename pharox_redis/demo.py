"""A short tour of pharox-redis: ``python -m pharox_redis [--url URL | --fakeredis]``.

The backend is chosen in this order:

1. ``--url`` or the ``REDIS_URL`` environment variable: an existing server. The demo then
   writes under a unique key prefix and deletes everything it wrote at the end; it never
   flushes anything.
2. A private ``redis-server`` (:class:`~pharox_redis.server.RedisServer`) when the binary is
   on ``PATH``; it listens on a unix socket and is removed on exit.
3. ``fakeredis`` (an in-process fake, for demos and tests only).

The demo builds a pool of twelve proxies and leases from it with ``RedisProxyManager`` (one
round trip per acquire): with every selector, with flat and nested filters and with a Python
predicate, through ``with_proxy`` with a keep-alive and an acquire callback. It then hammers
the pool from a few threads, first with pharox's stock ``ProxyManager`` and then with
``RedisProxyManager``, prints the final pool counters and audits the pool.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import redis
from pharox import (
    AcquireEventPayload,
    HealthCheckResult,
    PoolStatsSnapshot,
    Proxy,
    ProxyCredentials,
    ProxyFilters,
    ProxyManager,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    ProxyUnavailableError,
    SelectorStrategy,
)

from .connect import redact
from .errors import RedisStorageError
from .leased_proxy import LeasedProxy
from .manager import RedisProxyManager
from .server import RedisServer, redis_server_binary
from .storage import RedisStorage

POOL_NAME = "demo"
THREADS = 4
CYCLES_PER_THREAD = 200
FAKEREDIS_HINT = (
    "pharox-redis demo: no REDIS_URL, no redis-server on PATH, and no fakeredis[lua].\n"
    "Either install a server (e.g. `apt-get install redis-server`), point REDIS_URL at one,\n"
    "or install the fake: `pip install 'fakeredis[lua]'` (or `pip install -e '.[test]'`)."
)


@dataclass
class Backend:
    """The Redis the demo talks to.

    Parameters
    ----------
    storage:
        The storage under test.
    description:
        One line saying what the backend is and why it was chosen.
    shared:
        True for a server the demo does not own: everything written must be deleted.

    """

    storage: RedisStorage
    description: str
    shared: bool


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv:
        Arguments without the program name.

    Returns
    -------
    argparse.Namespace
        ``url`` (str or None) and ``fakeredis`` (bool).

    """
    parser = argparse.ArgumentParser(
        prog="python -m pharox_redis",
        description="Demo of pharox-redis: proxy leasing on Redis.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--url",
        help="Redis URL to use (overrides REDIS_URL); "
        "the demo writes under a unique prefix and deletes it afterwards",
    )
    group.add_argument(
        "--fakeredis",
        action="store_true",
        help="use the in-process fakeredis (demos and tests only)",
    )
    return parser.parse_args(argv)


def server_version(client: Any) -> str:
    """Return the ``redis_version`` a client's server reports (this checks the connection).

    Parameters
    ----------
    client:
        A redis-py (or fakeredis) client.

    Returns
    -------
    str
        The version string, ``"?"`` when the server does not say.

    Raises
    ------
    redis.RedisError
        When the server cannot be reached.

    """
    return str(client.info("server").get("redis_version", "?"))


@contextmanager
def open_backend(url: Optional[str], force_fake: bool, why_url: str) -> Iterator[Backend]:
    """Choose, start and finally tear down the backend.

    Parameters
    ----------
    url:
        An existing server's URL, or None.
    force_fake:
        Use fakeredis even when a server is available.
    why_url:
        Where ``url`` came from, for the backend line.

    Yields
    ------
    Backend
        The storage and a description of it.

    Raises
    ------
    ModuleNotFoundError
        When fakeredis is needed but not installed.

    """
    with ExitStack() as stack:
        if url is not None and not force_fake:
            prefix = f"pharox-demo-{uuid.uuid4().hex[:12]}"
            storage = RedisStorage.from_url(url, prefix=prefix)
            stack.callback(storage.client.close)
            version = server_version(storage.client)
            yield Backend(
                storage,
                f"redis {version} at {redact(url)} ({why_url}; "
                f"prefix {prefix!r}, removed at the end)",
                shared=True,
            )
            return
        if not force_fake and redis_server_binary() is not None:
            server = stack.enter_context(RedisServer())
            storage = RedisStorage.from_url(server.url, prefix="pharox-demo")
            stack.callback(storage.client.close)
            version = server_version(storage.client)
            yield Backend(
                storage,
                f"private redis-server {version} at {server.url} "
                "(REDIS_URL not set; removed on exit)",
                shared=False,
            )
            return
        import fakeredis

        if importlib.util.find_spec("lupa") is None:  # fakeredis runs Lua scripts with lupa
            raise ModuleNotFoundError("fakeredis needs lupa for EVALSHA", name="fakeredis")
        client = fakeredis.FakeRedis()
        stack.callback(client.close)
        reason = "--fakeredis given" if force_fake else "REDIS_URL not set, no redis-server on PATH"
        yield Backend(
            RedisStorage(client, prefix="pharox-demo"),
            f"fakeredis {fakeredis.__version__}, in-process, for demos and tests only ({reason})",
            shared=False,
        )


def build_proxies(pool: ProxyPool) -> list[Proxy]:
    """Return twelve proxies of mixed countries, sources and limits for ``pool``.

    Parameters
    ----------
    pool:
        The pool they belong to.

    Returns
    -------
    list[Proxy]
        The proxies (documentation addresses from 203.0.113.0/24; nothing connects to them).

    """
    rows: list[tuple[str, str, Optional[int], ProxyStatus]] = [
        ("US", "datacenter", None, ProxyStatus.ACTIVE),
        ("US", "residential", 2, ProxyStatus.ACTIVE),
        ("US", "mobile", 1, ProxyStatus.ACTIVE),
        ("DE", "datacenter", None, ProxyStatus.ACTIVE),
        ("DE", "residential", 1, ProxyStatus.ACTIVE),
        ("FR", "datacenter", 2, ProxyStatus.ACTIVE),
        ("FR", "mobile", None, ProxyStatus.ACTIVE),
        ("JP", "residential", None, ProxyStatus.ACTIVE),
        ("JP", "mobile", 2, ProxyStatus.ACTIVE),
        ("BR", "datacenter", None, ProxyStatus.ACTIVE),
        ("BR", "residential", 1, ProxyStatus.INACTIVE),
        ("GB", "residential", None, ProxyStatus.ACTIVE),
    ]
    proxies = []
    for i, (country, source, limit, status) in enumerate(rows, start=1):
        credentials = ProxyCredentials(user="demo", password="s3cret") if i == 12 else None
        proxies.append(
            Proxy(
                host=f"203.0.113.{i}",
                port=8000 + i,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=status,
                country=country,
                source=source,
                max_concurrency=limit,
                credentials=credentials,
            )
        )
    return proxies


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


def stats_line(stats: Optional[PoolStatsSnapshot]) -> str:
    """Format pool counters on one line.

    Parameters
    ----------
    stats:
        A snapshot, or None for an unknown pool.

    Returns
    -------
    str
        The counters.

    """
    if stats is None:
        return "pool not found"
    return (
        f"proxies={stats.total_proxies} active={stats.active_proxies} "
        f"available={stats.available_proxies} leased={stats.leased_proxies} "
        f"leases={stats.total_leases}"
    )


def stress(
    storage: RedisStorage, threads: int, cycles: int, stock: bool
) -> tuple[int, int, int, float]:
    """Run acquire/release cycles from several threads, each with its own manager.

    pharox's stock ``ProxyManager`` finds a proxy, then leases it, in two calls: two threads
    can find the same last free slot, and the loser gets ``ProxyUnavailableError`` (the lease
    itself is atomic, so nothing is over-leased). Such a lost race is counted and retried.
    ``RedisProxyManager`` finds and leases in one script, so it has no such race.

    Parameters
    ----------
    storage:
        The storage all threads share.
    threads:
        Number of threads.
    cycles:
        Acquire/release cycles per thread.
    stock:
        Use pharox's ``ProxyManager`` instead of ``RedisProxyManager``.

    Returns
    -------
    tuple[int, int, int, float]
        Cycles that got a lease, cycles that found nothing, lost races, and elapsed seconds.

    """
    leased = [0] * threads
    missed = [0] * threads
    races = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    selectors = list(SelectorStrategy)

    def worker(n: int) -> None:
        manager = ProxyManager(storage) if stock else RedisProxyManager(storage)
        manager.acquire_proxy("warm-up: resolve names", f"worker-{n}")
        start.wait()
        try:
            for i in range(cycles):
                selector = selectors[(n + i) % len(selectors)]
                while True:
                    try:
                        lease = manager.acquire_proxy(POOL_NAME, f"worker-{n}", selector=selector)
                        break
                    except ProxyUnavailableError:
                        races[n] += 1
                if lease is None:
                    missed[n] += 1
                    continue
                manager.release_proxy(lease)
                leased[n] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,), name=f"demo-{n}") for n in range(threads)]
    for thread in workers:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return sum(leased), sum(missed), sum(races), elapsed


def tour(storage: RedisStorage, say: Callable[[str], None]) -> bool:
    """Run the demo on a storage.

    Parameters
    ----------
    storage:
        An empty namespace to work in.
    say:
        Where output lines go.

    Returns
    -------
    bool
        True when every lease came back (the pool ends with zero leases).

    """
    pool = ProxyPool(name=POOL_NAME, description="pharox-redis demo pool")
    storage.save_pool(pool)
    proxies = build_proxies(pool)
    storage.add_proxies_bulk(proxies)
    say(f"pool {POOL_NAME!r}: {stats_line(storage.get_pool_stats(POOL_NAME))}")

    # Health checks: latency order for LOWEST_LATENCY (JP/residential fastest, DE next).
    for proxy, latency in ((proxies[7], 35), (proxies[3], 60), (proxies[0], 240)):
        storage.apply_health_check_result(
            HealthCheckResult(
                proxy_id=proxy.id,
                status=ProxyStatus.ACTIVE,
                latency_ms=latency,
                protocol=proxy.protocol,
                status_code=200,
            )
        )
    say("health: 203.0.113.8 35 ms, 203.0.113.4 60 ms, 203.0.113.1 240 ms")

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

    say(f"stress: {THREADS} threads x {CYCLES_PER_THREAD} acquire/release cycles, all selectors:")
    for name, stock in (("pharox ProxyManager", True), ("RedisProxyManager", False)):
        ok, missed, races, elapsed = stress(storage, THREADS, CYCLES_PER_THREAD, stock)
        say(
            f"  {name:<19} {(ok + missed) / elapsed:>7,.0f} cycles/s; {ok} leased, "
            f"{missed} found nothing, {races} lost races (ProxyUnavailableError)"
        )
    final = storage.get_pool_stats(POOL_NAME)
    say(f"final: {stats_line(final)}")
    audit = storage.audit(POOL_NAME)
    say(
        f"audit (pharox-redis verify): {audit.proxies} proxies, {audit.active_leases} active "
        f"leases, {len(audit.drift)} drift"
    )
    idle = final is not None and final.leased_proxies == 0 and final.total_leases == 0
    return idle and audit.clean


def remove_namespace(storage: RedisStorage) -> int:
    """Delete the demo pool, then any key still under the demo's prefix.

    Parameters
    ----------
    storage:
        The demo's storage (with its unique prefix).

    Returns
    -------
    int
        How many keys were left over after ``delete_pool`` and removed here.

    """
    pool_ids = [str(p.id) for p in storage.list_pools() if p.name == POOL_NAME]
    for pool_id in pool_ids:
        storage.delete_pool(pool_id)
    # delete_pool keeps the prefix-wide consumer registry; remove what is left of *our*
    # prefix (unique to this run) key by key. Never FLUSHDB on a server we do not own.
    pattern = f"{storage.context.keys.prefix}:*"
    leftovers = list(storage.client.scan_iter(match=pattern, count=1000))
    if leftovers:
        storage.client.unlink(*leftovers)
    return len(leftovers)


def main(argv: list[str]) -> int:
    """Run the demo.

    Parameters
    ----------
    argv:
        Command line arguments (without the program name).

    Returns
    -------
    int
        0 on success, 1 when no backend is usable or a lease was not returned.

    """
    args = parse_args(argv)
    url: Optional[str] = args.url
    why_url = "--url given"
    if url is None and os.environ.get("REDIS_URL"):
        url, why_url = os.environ["REDIS_URL"], "REDIS_URL set"
    try:
        with open_backend(url, args.fakeredis, why_url) as backend:
            print(f"backend: {backend.description}")
            try:
                clean = tour(backend.storage, print)
            finally:
                if backend.shared:
                    removed = remove_namespace(backend.storage)
                    print(
                        f"cleanup: deleted pool {POOL_NAME!r} and {removed} leftover key(s) "
                        "under the demo prefix"
                    )
    except ModuleNotFoundError as exc:
        if exc.name != "fakeredis":
            raise
        print(FAKEREDIS_HINT)
        return 1
    except (RedisStorageError, redis.RedisError) as exc:
        where = redact(url) if url is not None else "the demo's Redis"
        print(f"error: {where}: {exc}")
        return 1
    if not clean:
        print("ERROR: some leases were not returned")
        return 1
    print("all leases back to 0")
    return 0
