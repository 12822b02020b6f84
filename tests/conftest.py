"""Fixtures: every storage test runs on fakeredis and on a private redis-server.

The real server is started once per session on a unix socket with ``--save ''``; each test
gets its own key prefix, so nothing is flushed and tests never see each other's data.
Without ``redis-server`` on PATH the real-server tests are skipped with that reason, except
under ``CI=true``, where a missing server is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer, redis_server_binary

IN_CI = os.environ.get("CI", "").lower() == "true"
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
def make_client(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Build clients of the current backend (all fakeredis clients share one server)."""
    clients: list[Any] = []
    fake_server = fakeredis.FakeServer()

    def make(**kwargs: Any) -> Any:
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
def storage(make_storage: Callable[..., RedisStorage]) -> RedisStorage:
    return make_storage()
