"""Fixtures of the HTTP tests: real pproxy servers, an origin server, a real redis-server.

The proxies (see ``servers.py``) run for the whole session, on 127.0.0.2 and up:
``open`` without a login, ``alice`` with a plain one, ``spaced`` with a user name and a
password holding a space, ``@`` and ``:``. Without pproxy the tests are skipped, except
under CI=true (it is in the test extra).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pharox import Proxy, ProxyPool

from pharox_redis import OutcomePolicy, RedisStorage
from pharox_redis.server import RedisServer

from ..helpers import IN_CI
from .servers import Origin, ProxyServer, pproxy_available

NO_PPROXY = "pproxy is not installed: the HTTP tests run real proxies with it (pip install pproxy)"
LOGINS = {
    "open": (None, None),
    "alice": ("alice", "s3cret"),
    "spaced": ("bob smith", "p@ss w:rd"),
}


@pytest.fixture(scope="session")
def proxy_servers() -> Iterator[dict[str, ProxyServer]]:
    """One running pproxy per login of LOGINS, each on its own loopback address."""
    if not pproxy_available():
        if IN_CI:
            raise pytest.UsageError(f"CI=true but {NO_PPROXY}")
        pytest.skip(NO_PPROXY)
    servers: dict[str, ProxyServer] = {}
    try:
        for n, (name, (user, password)) in enumerate(LOGINS.items()):
            servers[name] = ProxyServer(f"127.0.0.{n + 2}", user, password).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def origin_server() -> Iterator[Origin]:
    with Origin() as origin:
        yield origin


@pytest.fixture
def origin(origin_server: Origin) -> Origin:
    """The origin, its records cleared for the test."""
    origin_server.reset()
    return origin_server


FAST_POLICY = OutcomePolicy(base_seconds=0.5, max_seconds=2.0, block_seconds=60.0)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def http_storage(redis_server: RedisServer) -> Iterator[RedisStorage]:
    """A RedisStorage on the private redis-server, under a prefix of its own, short cool-downs."""
    client = redis.Redis.from_url(redis_server.url)
    yield RedisStorage(client, prefix=f"h{uuid.uuid4().hex[:10]}", outcomes=FAST_POLICY)
    client.close()


def seed_pool(storage: RedisStorage, proxies: list[Any]) -> ProxyPool:
    """Save a pool of ``proxies`` (ProxyServers, or pharox Proxies already built)."""
    pool = ProxyPool(name=f"pool-{uuid.uuid4().hex[:6]}")
    storage.save_pool(pool)
    made = [p if isinstance(p, Proxy) else p.proxy(pool.id) for p in proxies]
    for proxy in made:
        proxy.pool_id = pool.id
    assert storage.add_proxies_bulk(made) == len(made)
    return pool
