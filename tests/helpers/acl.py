"""The documented least-privilege ACL rule, and reading what a server ran or refused."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import redis

from pharox_redis.server import RedisServer, redis_server_binary

ROOT = Path(__file__).resolve().parents[2]
LUA_DIR = ROOT / "lua"

# The documented rule (README, "Guarantees"): keys under the prefix, no pub/sub channels,
# and only these commands. Line 1: sent by the client only; line 2: sent by the client and
# run by the Lua scripts; line 3: run by the Lua scripts only. SCAN is for audit() of every
# pool, WAIT for wait_replicas. Keep it identical to the README (test_docs_show_the_rule).
ACL_RULE = (
    "~pharox:* resetchannels &pharox:handoff:* -@all"
    " +fcall +function|load +multi +exec +ping +scan +wait +unlink +hsetnx +hscan +zrevrange"
    " +exists +set +hget +hgetall +hkeys +hexists +hmget +hset +hdel +zadd +zrange +zrem +time"
    " +del +get +hincrby +zcard +zlexcount +zrangebyscore +zremrangebyrank +zscore +hlen +zcount"
    " +publish +pubsub|numsub +subscribe"
)
# The scripts as a library (Redis 7+, Valkey), and as single scripts (Redis 6.2, or a user
# refused Functions): the README's rule for Redis 6.2 swaps the first for the second.
FUNCTION_WORDS = "+fcall +function|load"
SCRIPT_WORDS = "+evalsha +script|load"
EVALSHA_RULE = ACL_RULE.replace(FUNCTION_WORDS, SCRIPT_WORDS)
USER = "pharox-worker"
PASSWORD = "s3cret-pass"
ALWAYS_ALLOWED = {"hello", "auth"}  # connection handshake; Redis never refuses these


def rule_commands(rule: str = ACL_RULE) -> set[str]:
    """Return the commands a rule allows (its ``+command`` words)."""
    return {word[1:] for word in rule.split() if word.startswith("+")}


def lua_commands() -> set[str]:
    """Return every command the Lua scripts run (``redis.call`` / ``redis.pcall``)."""
    source = "\n".join(path.read_text() for path in sorted(LUA_DIR.glob("*.lua")))
    calls = re.findall(r"redis\.p?call\(([^,)]*)(?:,\s*'([A-Z]+)')?", source)
    containers = ("pubsub",)  # named as the ACL names them: pubsub|numsub
    names = set()
    for call, sub in calls:
        name = call.strip().strip("'\"").lower()
        names.add(f"{name}|{sub.lower()}" if name in containers else name)
    assert all(re.fullmatch(r"[a-z]+(\|[a-z]+)?", name) for name in names), names  # not computed
    return names


def plain_commands() -> set[str]:
    """Return every plain command the library sends (``Command(("NAME", ...))``, ``Scan``).

    A command with a subcommand (``SCRIPT LOAD``, ``FUNCTION LOAD``) is named as the ACL
    names it: ``script|load``. The scripts' own calls (``FCALL``, ``EVALSHA``) are added.
    """
    source = "\n".join(path.read_text() for path in sorted((ROOT / "pharox_redis").rglob("*.py")))
    found = re.findall(r'Command\(\(\s*"(\w+)"(?:,\s*"([A-Z]+)")?', source)
    containers = ("SCRIPT", "FUNCTION")
    names = {f"{name}|{sub}".lower() if name in containers else name.lower() for name, sub in found}
    names.update(verb.lower() for verb in re.findall(r'\("(FCALL|EVALSHA)", ', source))
    if re.search(r"\bScan\(", source):  # the executors walk a Scan with SCAN
        names.add("scan")
    return names


def command_counts(admin: redis.Redis) -> dict[str, int]:
    """Return calls + rejected calls per command since the last CONFIG RESETSTAT."""
    stats: dict[str, Any] = admin.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"]) + int(v.get("rejected_calls", 0))
        for name, v in stats.items()
    }


def acl_log(admin: redis.Redis) -> list[Any]:
    """Return the entries of ``ACL LOG``: what the server refused since the last reset."""
    entries: list[Any] = admin.acl_log()
    return entries


def setinfo_rule() -> str:
    """Return what the README says to add on Redis 7.2+, where redis-py sends CLIENT SETINFO.

    Redis 7.0 does not know that subcommand (and refuses a rule naming it); redis-py gets
    an error there and ignores it, as it ignores a refusal.
    """
    binary = redis_server_binary()
    assert binary is not None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"v=(\d+)\.(\d+)", out.stdout)
    assert found is not None, out.stdout
    return " +client|setinfo" if (int(found[1]), int(found[2])) >= (7, 2) else ""


class AclServer(NamedTuple):
    server: RedisServer
    admin: redis.Redis
    url: str  # redis://USER:PASSWORD@127.0.0.1:port/0
    rule: str  # ACL_RULE, plus +client|setinfo on Redis 7.2+
