"""A least-privilege ACL user: the rule the README documents, and what it needs.

``ACL_RULE`` (``tests/helpers/acl.py``) lists exactly the commands the adapter needs: the ones
it sends (FCALL, FUNCTION LOAD when the library is missing, MULTI/EXEC, the plain reads and
writes, the PING of redis-py's health check) and the ones its Lua scripts run, since Redis 7
checks a script's ``redis.call`` against the ACL of the user who runs it. HELLO and AUTH are
always allowed, so the rule does not list them. On Redis 6.2 (no Functions) the rule names
EVALSHA and SCRIPT LOAD instead (``EVALSHA_RULE``).

This module checks the rule itself: statically against the code and the README, against
what the restricted user is refused, and in its ACL-file form. ``test_acl_flow.py`` runs the
whole API as that user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pharox import ProxyPool
from redis.exceptions import NoPermissionError

from pharox_redis import RedisProxyManager, RedisStorage, RedisStorageError
from pharox_redis.server import RedisServer, redis_server_binary

from ..helpers import make_proxy
from ..helpers.acl import (
    ACL_RULE,
    EVALSHA_RULE,
    FUNCTION_WORDS,
    PASSWORD,
    ROOT,
    SCRIPT_WORDS,
    USER,
    AclServer,
    acl_log,
    lua_commands,
    plain_commands,
    rule_commands,
    setinfo_rule,
)

pytestmark = pytest.mark.real_redis


def test_rule_allows_every_command_the_code_sends_or_the_scripts_run() -> None:
    """A static check: it also covers paths the API flow below may not reach."""
    scripted, sent = lua_commands(), plain_commands()
    assert {"hget", "zadd", "time"} <= scripted and {"hgetall", "scan", "unlink"} <= sent
    assert {"fcall", "function|load", "evalsha", "script|load"} <= sent
    # Either way of calling the scripts: the rule for Functions, or the one for EVALSHA.
    assert scripted | sent <= rule_commands() | rule_commands(EVALSHA_RULE)
    assert rule_commands() - rule_commands(EVALSHA_RULE) == {"fcall", "function|load"}
    assert "eval" not in rule_commands() | rule_commands(EVALSHA_RULE)  # never the source


def test_docs_show_the_rule() -> None:
    """The README documents this very rule, and the words Redis 6.2 takes instead."""
    text = " ".join((ROOT / "README.md").read_text().split())
    assert ACL_RULE in text, "document ACL_RULE in the README"
    assert f"`{FUNCTION_WORDS}` with `{SCRIPT_WORDS}`" in text


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("ACL", "LIST"),
        ("SCRIPT", "FLUSH"),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DELETE", "pharox_0123456789abcdef"),
        ("EVAL", "return 1", "0"),
        ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
        ("SHUTDOWN",),
        ("SELECT", "1"),
        ("SUBSCRIBE", "pharox:events"),
        ("GET", "other:key"),
        ("SET", "other:key", "1"),
        ("DEL", "other:key"),
        ("HGETALL", "pharox"),  # the prefix needs its ':'
    ],
    ids=lambda c: " ".join(c),
)
def test_restricted_user_is_refused(
    acl_server: AclServer, admin: redis.Redis, command: tuple[str, ...]
) -> None:
    admin.set("other:key", "kept")
    with redis.Redis.from_url(acl_server.url) as client, pytest.raises(NoPermissionError):
        client.execute_command(*command)
    assert admin.get("other:key") == b"kept"
    assert len(acl_log(admin)) == 1
    admin.delete("other:key")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("return redis.call('SET', 'other:key', 'x')", "pharox:x"),  # a key outside the prefix
        ("return redis.call('SET', KEYS[1], 'x')", "other:key"),  # declared in KEYS
        ("return redis.call('FLUSHALL')", "pharox:x"),  # a command outside the rule
        ("return redis.call('LPUSH', KEYS[1], 'x')", "pharox:x"),  # even on its own keys
    ],
)
def test_scripts_run_with_the_users_permissions(
    acl_server: AclServer, admin: redis.Redis, body: str, key: str
) -> None:
    admin.set("other:key", "kept")
    name = f"pharox_test_{abs(hash(body)) % 10**6}"
    with redis.Redis.from_url(acl_server.url) as client:
        # Loading is allowed; running checks each command.
        client.function_load(
            f"#!lua name={name}\nredis.register_function('{name}', function(KEYS, ARGV) "
            f"{body} end)\n"
        )
        # Redis says "no permissions", Valkey "No permissions".
        refused = r"(?i)can't access|can't run|no permissions"
        with pytest.raises(redis.ResponseError, match=refused):
            client.fcall(name, 1, key)
    admin.function_delete(name)
    assert admin.get("other:key") == b"kept"
    assert acl_log(admin)
    admin.delete("other:key")


def test_storage_with_another_prefix_is_refused(acl_server: AclServer, admin: redis.Redis) -> None:
    storage = RedisStorage.from_url(acl_server.url, prefix="other")
    try:
        with pytest.raises(RedisStorageError) as caught:
            storage.save_pool(ProxyPool(name="outside"))
        assert isinstance(caught.value.__cause__, NoPermissionError)
    finally:
        storage.client.close()
    assert admin.keys("other:*") == []


def test_rule_loads_from_an_acl_file(tmp_path: Path) -> None:
    """The ACL-file form of the rule, as the README shows it, loads and works."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    acl_file = tmp_path / "users.acl"
    worker = f"user {USER} on >{PASSWORD} {ACL_RULE}{setinfo_rule()}"
    acl_file.write_text(f"user default on nopass ~* &* +@all\n{worker}\n")
    with RedisServer(tcp=True, extra=("--aclfile", str(acl_file))) as server:
        storage = RedisStorage.from_url(f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0")
        try:
            pool = ProxyPool(name="from-file")
            storage.save_pool(pool)
            storage.save_proxy(make_proxy(pool))
            with RedisProxyManager(storage).with_proxy("from-file") as leased:
                assert leased is not None
        finally:
            storage.client.close()
        with redis.Redis.from_url(server.url) as admin:
            assert acl_log(admin) == []
            users = admin.execute_command("ACL", "LIST")
            line = next(u.decode() for u in users if u.decode().startswith(f"user {USER} "))
            assert "~pharox:*" in line and "+fcall" in line
