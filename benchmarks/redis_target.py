"""The Redis the harness measures: a private ``redis-server`` it starts, or ``--redis-url``.

Every storage gets a fresh key prefix and everything under it is deleted (SCAN + UNLINK)
when the storage is done with, so a shared server is left as it was. Nothing is flushed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import redis

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer, redis_server_binary

from .settings import redact


@dataclass
class RedisTarget:
    """Where to connect, and what it is."""

    url: str
    private: bool
    version: str
    description: str
    admin: redis.Redis  # INFO, MEMORY USAGE, SCAN/UNLINK of our own prefixes

    @staticmethod
    def fresh_prefix(tag: str) -> str:
        return f"bench-{tag}-{uuid.uuid4().hex[:10]}"

    @contextmanager
    def storage(self, tag: str, **options: Any) -> Iterator[RedisStorage]:
        """Yield a RedisStorage under a fresh prefix; delete the prefix's keys afterwards."""
        prefix = options.pop("prefix", None) or self.fresh_prefix(tag)
        storage = RedisStorage.from_url(self.url, prefix=prefix, **options)
        try:
            yield storage
        finally:
            storage.client.close()
            self.drop_prefix(prefix)

    def drop_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (ours by construction); return how many."""
        removed = 0
        batch: list[Any] = []
        for key in self.admin.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += int(self.admin.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(self.admin.unlink(*batch))
        return removed

    def server_usec(self) -> int:
        """Return the server's total command time so far (``INFO commandstats`` usec)."""
        stats = self.admin.info("commandstats")
        return sum(int(entry["usec"]) for entry in stats.values())

    def server_cpu(self) -> float:
        """Return the redis-server process's CPU time so far (``INFO cpu``, user + system s)."""
        cpu = self.admin.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def used_memory(self) -> int:
        """Return the server's ``used_memory`` (bytes)."""
        return int(self.admin.info("memory")["used_memory"])

    def prefix_memory(self, prefix: str) -> int:
        """Return the sum of ``MEMORY USAGE key SAMPLES 0`` over the keys of ``prefix``."""
        keys = list(self.admin.scan_iter(match=f"{prefix}:*", count=1000))
        pipe = self.admin.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        return sum(int(size or 0) for size in pipe.execute())


@contextmanager
def open_redis(url: Optional[str]) -> Iterator[RedisTarget]:
    """Yield the target: ``url`` when given, else a private redis-server on loopback TCP."""
    server: Optional[RedisServer] = None
    if url is None:
        if redis_server_binary() is None:
            raise SystemExit(
                "redis-server is not on PATH: install it (apt-get install redis-server) "
                "or pass --redis-url"
            )
        server = RedisServer(tcp=True).start()
        url = server.url
    admin = redis.Redis.from_url(url, socket_timeout=30)
    try:
        version = str(admin.info("server").get("redis_version", "?"))
        if server is not None:
            description = f"private redis-server {version} on {url} (started for this run)"
        else:
            description = (
                f"redis {version} at {redact(url)} (--redis-url; fresh key prefixes, deleted "
                "afterwards; memory figures include other clients' activity)"
            )
        yield RedisTarget(url, server is not None, version, description, admin)
    finally:
        admin.close()
        if server is not None:
            server.close()
