"""Fixtures of the security tests: a private server with the restricted ACL user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from pharox_redis.server import RedisServer, redis_server_binary

from ..helpers.acl import ACL_RULE, PASSWORD, USER, AclServer, setinfo_rule


@pytest.fixture(scope="module")
def acl_server() -> Iterator[AclServer]:
    """A private server with the restricted user; the admin client is the default user."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    with RedisServer(tcp=True) as server, redis.Redis.from_url(server.url) as admin:
        rule = ACL_RULE + setinfo_rule()
        admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *rule.split())
        url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"
        yield AclServer(server, admin, url, rule)


@pytest.fixture
def admin(acl_server: AclServer) -> redis.Redis:
    """The default user's client, with the server's stats and ACL log reset."""
    acl_server.admin.acl_log_reset()
    acl_server.admin.config_resetstat()
    return acl_server.admin
