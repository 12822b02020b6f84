"""Fixtures: every storage test runs on fakeredis and on a private redis-server.

The real server is started once per session on a unix socket with ``--save ''``; each test
gets its own key prefix, so nothing is flushed and tests never see each other's data.
Without ``redis-server`` on PATH the real-server tests are skipped with that reason, except
under ``CI=true``, where a missing server is an error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from pharox_redis import AsyncRedisStorage, RedisStorage
from pharox_redis.server import RedisServer, redis_server_binary

from .helpers import IN_CI

NO_SERVER = "redis-server is not on PATH: real-Redis tests need it (apt-get install redis-server)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if redis_server_binary() is not None:
        return
    if IN_CI:
        raise pytest.UsageError(f"CI=true but {NO_SERVER}")
    for item in items:
        if "real_redis" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=NO_SERVER))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole session."""
    if redis_server_binary() is None:
        pytest.skip(NO_SERVER)
    with RedisServer() as server:
        yield server


@pytest.fixture(
    params=[
        pytest.param("fakeredis", id="fakeredis"),
        pytest.param("redis", id="redis", marks=pytest.mark.real_redis),
    ]
)
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
        client: redis.Redis
        if backend == "fakeredis":
            client = fakeredis.FakeRedis(server=fake_server, **kwargs)
        else:
            server = request.getfixturevalue("redis_server")
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
        client: redis.asyncio.Redis
        if backend == "fakeredis":
            client = fakeredis.FakeAsyncRedis(server=fake_server, **kwargs)
        else:
            server = request.getfixturevalue("redis_server")
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
