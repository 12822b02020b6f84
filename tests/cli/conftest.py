"""The command-line tests' fixture: ``cli(...)`` runs ``pharox-redis`` on the session's server.

Every test gets its own key prefix on the private redis-server of ``tests/conftest.py``, so
the tests share one server and never see each other's pools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer

from ..helpers.cli import Done, run_cli

Cli = Callable[..., Done]


@pytest.fixture
def cli(redis_server: RedisServer, prefix: str) -> Cli:
    """Run ``pharox-redis ARGS --url <private server> --prefix <the test's prefix>``."""

    def run(*args: str, stdin: str | None = None) -> Done:
        return run_cli(*args, "--url", redis_server.url, "--prefix", prefix, stdin=stdin)

    return run


@pytest.fixture
def admin(redis_server: RedisServer, prefix: str) -> Iterator[RedisStorage]:
    """A storage on the same server and prefix, to set up and check what the command did."""
    storage = RedisStorage.from_url(redis_server.url, prefix=prefix)
    yield storage
    storage.client.close()
