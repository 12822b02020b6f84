"""Section "http": what the leasing clients add per request, against bare clients.

One process sends requests one after the other through the same real proxy (a ``pproxy``
process with a login) to the same origin (``benchmarks.http_origin``, a process of its
own), over keep-alive connections: a bare urllib3 ``ProxyManager`` and
:class:`~pharox_redis.http.LeasingClient` (an acquire and a release with an outcome around
each request: two Redis round trips), a bare ``httpx.AsyncClient`` and
:class:`~pharox_redis.http.AsyncLeasingClient`; and ``LeasingClient.session()`` (one lease
for all the requests of a round). Per-request medians over ``--http-requests`` requests
per mode and round, the modes in alternating order per round; ratios are of medians of the
same run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Optional

from pharox import Proxy, ProxyCredentials, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import AsyncRedisProxyManager, AsyncRedisStorage, RedisProxyManager
from pharox_redis.http import (
    AsyncLeasingClient,
    LeasingClient,
    ProxyEndpoint,
    httpx_proxy,
    urllib3_manager,
)

from .markdown import table, us
from .redis_target import RedisTarget
from .settings import Settings

URLLIB3, LEASING, SESSION = "urllib3 ProxyManager", "LeasingClient", "LeasingClient.session()"
HTTPX, ASYNC_LEASING = "httpx.AsyncClient", "AsyncLeasingClient"
PAIRS = ((LEASING, URLLIB3), (SESSION, URLLIB3), (ASYNC_LEASING, HTTPX))
PROXY_HOST = "127.0.0.1"
LOGIN = ("bench user", "p@ss word")


@dataclass
class HttpResult:
    """Per-request seconds of each mode (every sample), or why the section did not run."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    rounds: int = 0
    skipped: Optional[str] = None

    def median(self, mode: str) -> Optional[float]:
        found = self.samples.get(mode)
        return median(found) if found else None


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def _servers() -> Iterator[tuple[str, ProxyEndpoint]]:
    """Yield the origin's URL and the proxy's endpoint, both running in processes of their own."""
    import socket

    origin = _start(["-m", "benchmarks.http_origin"])
    proxy: Optional[subprocess.Popen[str]] = None
    try:
        assert origin.stdout is not None
        port = int(origin.stdout.readline())
        with socket.socket() as probe:
            probe.bind((PROXY_HOST, 0))
            proxy_port = int(probe.getsockname()[1])
        user, password = LOGIN
        listen = f"http://{PROXY_HOST}:{proxy_port}#{user}:{password}"
        proxy = _start(["-m", "pproxy", "-l", listen, "--auth", "0"])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((PROXY_HOST, proxy_port), timeout=0.2).close()
                break
            except OSError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pproxy did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/", ProxyEndpoint("http", PROXY_HOST, proxy_port, *LOGIN)
    finally:
        if proxy is not None:
            _stop(proxy)
        _stop(origin)


def _timed(send: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        send()
        out.append(time.perf_counter() - started)
    return out


async def _timed_async(send: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await send()
        out.append(time.perf_counter() - started)
    return out


def _sync_modes(
    manager: RedisProxyManager, pool: str, url: str, ep: ProxyEndpoint, n: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    bare = urllib3_manager(ep, timeout=10)
    try:
        bare.request("GET", url)  # warm: the connection is made once, as for the others
        out[URLLIB3] = _timed(lambda: bare.request("GET", url), n)
    finally:
        bare.clear()
    with LeasingClient(manager, pool, duration_seconds=30, timeout=10) as client:
        client.request("GET", url)
        out[LEASING] = _timed(lambda: client.request("GET", url), n)
        with client.session() as session:
            out[SESSION] = _timed(lambda: session.request("GET", url), n)
    return out


async def _async_modes(
    redis_url: str, prefix: str, pool: str, url: str, ep: ProxyEndpoint, n: int
) -> dict[str, list[float]]:
    import httpx

    out: dict[str, list[float]] = {}
    async with httpx.AsyncClient(proxy=httpx_proxy(ep), timeout=10, trust_env=False) as bare:
        await bare.get(url)
        out[HTTPX] = await _timed_async(lambda: bare.get(url), n)
    storage = AsyncRedisStorage.from_url(redis_url, prefix=prefix)
    try:
        manager = AsyncRedisProxyManager(storage)
        async with AsyncLeasingClient(
            manager, pool, duration_seconds=30, timeout=10, trust_env=False
        ) as client:
            await client.get(url)
            out[ASYNC_LEASING] = await _timed_async(lambda: client.get(url), n)
    finally:
        await storage.client.aclose()
    return out


def run_http(settings: Settings, target: RedisTarget, say: Callable[[str], None]) -> HttpResult:
    """Measure each mode ``settings.rounds`` times, alternating which family goes first."""
    n = settings.http_requests
    result = HttpResult(requests=n, rounds=settings.rounds)
    try:
        import pproxy  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        import urllib3  # noqa: F401
    except ImportError as exc:
        result.skipped = f"needs {exc.name} (pip install -e '.[test]')"
        say(f"  skipped: {result.skipped}")
        return result
    prefix = target.fresh_prefix("http")
    with _servers() as (url, ep), target.storage("http", prefix=prefix) as storage:
        pool = ProxyPool(name=f"http-{uuid.uuid4().hex[:6]}")
        storage.save_pool(pool)
        storage.add_proxies_bulk(
            [
                Proxy(
                    host=ep.host,
                    port=ep.port,
                    protocol=ProxyProtocol.HTTP,
                    pool_id=pool.id,
                    status=ProxyStatus.ACTIVE,
                    credentials=ProxyCredentials(user=LOGIN[0], password=LOGIN[1]),
                )
            ]
        )
        manager = RedisProxyManager(storage)
        for r in range(settings.rounds):
            families = ["sync", "async"] if r % 2 == 0 else ["async", "sync"]
            for family in families:
                if family == "sync":
                    got = _sync_modes(manager, pool.name, url, ep, n)
                else:
                    got = asyncio.run(_async_modes(target.url, prefix, pool.name, url, ep, n))
                for mode, samples in got.items():
                    result.samples.setdefault(mode, []).extend(samples)
        for mode in (URLLIB3, LEASING, SESSION, HTTPX, ASYNC_LEASING):
            say(f"  {mode:<26} median {us(result.median(mode))} us per request")
    return result


def http_lines(result: HttpResult) -> list[str]:
    """The report's section: medians per request, and the leasing clients' overhead."""
    lines = ["## HTTP: the leasing clients' overhead per request", ""]
    if result.skipped is not None:
        return [*lines, f"Not run: {result.skipped}.", ""]
    lines += [
        f"{result.requests} requests per mode and round, {result.rounds} round(s), one after "
        "the other through one pproxy HTTP proxy with a login to a keep-alive origin, all on "
        "loopback (`benchmarks/http.py`). A leased request adds an acquire and a release "
        "with its outcome (two Redis round trips); a session leases once per round.",
        "",
    ]
    rows = []
    for mode, bare in PAIRS:
        m, b = result.median(mode), result.median(bare)
        ratio = "-" if m is None or not b else f"{m / b:.2f}"
        added = "-" if m is None or b is None else us(m - b)
        rows.append([mode, us(m), bare, us(b), ratio, added])
    lines += table(
        ["client", "median us", "bare client", "bare median us", "x bare", "added us"], rows
    )
    return lines
