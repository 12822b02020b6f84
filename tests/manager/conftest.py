"""Fixtures of the manager tests: every test runs with the sync and the async manager.

Each on every deployment of ``tests/conftest.py``: fakeredis, a private redis-server and
valkey-server, a Redis Cluster and a Sentinel-managed master.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import pytest

from pharox_redis import AsyncRedisProxyManager, AsyncRedisStorage, RedisProxyManager, RedisStorage

from ..conftest import DEPLOYMENTS
from ..helpers import server_now as server_clock
from ..helpers.managers import AsyncManager


@pytest.fixture(params=DEPLOYMENTS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manager(
    kind: str,
    make_storage: Callable[..., RedisStorage],
    make_async_storage: Callable[..., AsyncRedisStorage],
    loop: asyncio.AbstractEventLoop,
) -> RedisProxyManager | AsyncManager:
    """The manager under test: sync, or async behind the facade."""
    if kind == "sync":
        return RedisProxyManager(make_storage())
    return AsyncManager(AsyncRedisProxyManager(make_async_storage()), loop)


@pytest.fixture
def other(make_storage: Callable[..., RedisStorage]) -> RedisStorage:
    """Another worker on the same keyspace, with a client (and caches) of its own."""
    return make_storage()


@pytest.fixture
def server_now(make_client: Callable[..., Any]) -> Callable[[], datetime]:
    """The Redis server's clock, the one leases are stamped with."""
    return partial(server_clock, make_client())
