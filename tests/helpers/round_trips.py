"""Counting what a private redis-server runs, to check what each operation costs.

Client side, :class:`~tests.helpers.Recorder` counts the batches a storage executes (one
batch = one round trip). Server side, a :class:`Meter` counts what the server ran: ``INFO
commandstats`` after ``CONFIG RESETSTAT``, and ``MONITOR`` to tell the commands clients sent
apart from the ones the Lua scripts ran inside them. Every measurement checks that the two
agree: commandstats, less the meter's own CONFIG RESETSTAT and ECHO, equals the sent
commands plus the script commands exactly.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
import redis
from pharox import PoolStatsSnapshot, ProxyPool, SelectorStrategy

from pharox_redis import RedisStorage
from pharox_redis.operations.batch import Batch
from pharox_redis.scripts import library, lua_dir, sources
from pharox_redis.server import RedisServer

from . import make_pool, make_proxy

# Subcommand containers: commandstats names their commands "client|setinfo", "script|load".
_CONTAINERS = {"client", "config", "script", "function", "object", "memory", "acl", "command"}
STATS_FIELDS = (
    "pool_name",
    "total_proxies",
    "active_proxies",
    "available_proxies",
    "leased_proxies",
    "total_leases",
)


# EVALSHA's first argument -> script name (the SHA1 of the source, the same for every storage),
# and FCALL's (the function's name in the library).
SHAS = {source.sha: name for name, source in sources().items()}
FUNCTIONS = {function: name for name, function in library().functions.items()}
# Every command any script may run (all calls in lua/ are literal redis.call('NAME', ...)).
SCRIPT_VOCABULARY = {
    name.lower()
    for path in lua_dir().glob("*.lua")
    for name in re.findall(r"redis\.p?call\('([A-Za-z]+)'", path.read_text(encoding="utf-8"))
}


def command_type(tokens: list[str]) -> str:
    name = tokens[0].lower()
    if name in _CONTAINERS and len(tokens) > 1:
        return f"{name}|{tokens[1].lower()}"
    return name


@dataclass
class Seen:
    """What the server ran during one measurement."""

    sent: list[str] = field(default_factory=list)  # commands clients sent, FCALL by script
    in_scripts: Counter[str] = field(default_factory=Counter)  # commands the scripts ran
    stats: Counter[str] = field(default_factory=Counter)  # INFO commandstats, meter's removed


class Meter:
    """Count the commands a private redis-server runs while a block executes.

    Nothing but the measured code may talk to the server during the block. The meter's own
    commands are left out: CONFIG RESETSTAT (counted by commandstats, never shown by
    MONITOR) and the ECHO that marks the end of the block in the MONITOR stream.
    """

    def __init__(self, server: RedisServer) -> None:
        self.stats_client = redis.Redis.from_url(server.url)
        self.monitor_client = redis.Redis.from_url(server.url)
        self.stats_client.ping()  # connect now: no handshake inside a measurement
        self.load_scripts()

    def load_scripts(self) -> None:
        """Load every script and the library, so no measurement depends on test order."""
        for source in sources().values():
            self.stats_client.script_load(source.text)
        self.stats_client.function_load(library().source.text, replace=True)

    def close(self) -> None:
        self.stats_client.close()
        self.monitor_client.close()

    @contextmanager
    def measure(self) -> Iterator[Seen]:
        seen = Seen()
        with self.monitor_client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self.stats_client.config_resetstat()  # CONFIG is never shown by MONITOR
            yield seen
            token = uuid.uuid4().hex
            self.stats_client.echo(token)
            while True:
                entry = monitor.next_command()
                tokens = entry["command"].split(" ")
                if tokens == ["ECHO", token]:
                    break
                if entry["client_type"] == "lua":
                    seen.in_scripts[command_type(tokens)] += 1
                elif tokens[0].upper() == "EVALSHA":
                    seen.sent.append(f"EVALSHA {SHAS.get(tokens[1], tokens[1])}")
                elif tokens[0].upper() == "FCALL":
                    seen.sent.append(f"FCALL {FUNCTIONS.get(tokens[1], tokens[1])}")
                else:
                    size = 2 if tokens[0].lower() in _CONTAINERS else 1
                    seen.sent.append(" ".join(t.upper() for t in tokens[:size]))
        raw = self.stats_client.info("commandstats")
        stats = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()})
        stats.subtract({"config|resetstat": 1, "echo": 1})  # the meter's own
        assert all(n >= 0 for n in stats.values()), stats
        seen.stats = +stats
        # Full accounting: the server ran exactly what was sent plus what the scripts ran.
        sent = Counter(command_type(label.split(" ")) for label in seen.sent)
        assert seen.stats == sent + seen.in_scripts, (seen.stats, sent, seen.in_scripts)
        assert set(seen.in_scripts) <= SCRIPT_VOCABULARY, seen.in_scripts


def new_storage(
    server: RedisServer, prefix: str, made: list[RedisStorage], functions: bool = True
) -> RedisStorage:
    """A storage with empty caches (as in a new process), already connected."""
    s = RedisStorage.from_url(server.url, prefix=prefix, functions=functions)
    s.client.ping()
    made.append(s)
    return s


def seed(storage: RedisStorage, name: str = "pool", size: int = 6, **fields: Any) -> ProxyPool:
    """A pool of ``size`` proxies, alternately in the US and in AR (US first in any order)."""
    pool = make_pool(storage, name)
    fields.setdefault("max_concurrency", None)
    storage.add_proxies_bulk(
        [
            make_proxy(pool, n, country="US" if n % 2 == 0 else "AR", latency_ms=10 + n, **fields)
            for n in range(size)
        ]
    )
    return pool


def stats_fields(stats: Optional[PoolStatsSnapshot]) -> dict[str, Any]:
    assert stats is not None
    return {k: getattr(stats, k) for k in STATS_FIELDS}


def script_names(batches: list[Batch]) -> list[list[str]]:
    return [[getattr(c, "name", "command") for c in b.calls] for b in batches]


ACQUIRE = ["FCALL acquire"]  # the pool's cleanup entry already covers the lease
FIRST_ACQUIRE = ["FCALL acquire", "FCALL schedule"]  # a process's first in a pool
RELEASE = ["FCALL release"]
SELECTORS = pytest.mark.parametrize("selector", list(SelectorStrategy), ids=lambda s: s.value)
