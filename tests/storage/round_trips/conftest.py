"""Fixtures of the round-trip tests: one private redis-server and one Meter per module.

Nothing but the measured code may talk to that server during a measurement, so these
tests do not use the session server of ``tests/conftest.py``; ``prefix`` and ``storage``
are overridden here to live on the module's server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer

from ...helpers.round_trips import Meter, new_storage


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def meter(server: RedisServer) -> Iterator[Meter]:
    m = Meter(server)
    yield m
    m.close()


@pytest.fixture
def prefix() -> str:
    return f"rt{uuid.uuid4().hex[:10]}"


@pytest.fixture
def storage(server: RedisServer, prefix: str, opened: list[RedisStorage]) -> RedisStorage:
    """A storage on the module's server, connected, with empty caches."""
    return new_storage(server, prefix, opened)
