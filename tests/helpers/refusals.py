"""Helpers of the hostile-input tests: a refusal writes nothing and leaves the audit clean.

:func:`refuse` runs a call that must be refused: it checks the error (a ValueError or a
pharox error, never a redis-py error or ``RedisStorageError``, so nothing reached Redis or a
script), that the keys under the storage's prefix are byte for byte what they were, and that
``storage.audit()`` finds no drift. :class:`Seeded` is the state every refusal starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import pytest
import redis
from pharox import (
    HealthCheckResult,
    Proxy,
    ProxyFilters,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.errors import RedisStorageError

from . import make_pool, make_proxy

MakeStorage = Callable[..., RedisStorage]


def key_glob(prefix: str) -> str:
    """The SCAN pattern of every key under ``prefix`` (glob characters in it escaped)."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return escaped + ":{*"


def contents(storage: RedisStorage) -> dict[bytes, Any]:
    """Every key of a storage's prefix with its type and full value."""
    client = storage.client
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=key_glob(storage.context.keys.prefix), count=1000):
        raw = key if isinstance(key, bytes) else key.encode()
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            value = client.get(key)
        elif kind == "set":
            value = client.smembers(key)
        else:
            value = client.lrange(key, 0, -1)
        out[raw] = (kind, value)
    return out


def no_redis_error(exc: BaseException) -> None:
    """A refusal must come from validation, not from Redis or a script."""
    assert not isinstance(exc, (RedisStorageError, redis.RedisError)), exc
    seen: Optional[BaseException] = exc
    while seen is not None:
        assert not isinstance(seen, redis.RedisError), seen
        seen = seen.__cause__ or seen.__context__


def assert_clean(storage: RedisStorage) -> None:
    assert storage.audit().drift == ()


def refuse(
    storage: RedisStorage,
    expected: type[BaseException] | tuple[type[BaseException], ...],
    call: Callable[[], Any],
    match: Optional[str] = None,
) -> BaseException:
    """Run a call that must be refused: the error expected, nothing written, audit clean."""
    before = contents(storage)
    with pytest.raises(expected, match=match) as info:
        call()
    no_redis_error(info.value)
    assert contents(storage) == before, "a refused call wrote to Redis"
    assert_clean(storage)
    return info.value


@contextmanager
def writes_nothing(storage: RedisStorage) -> Iterator[None]:
    """The block may return normally but must not change any key; the audit stays clean."""
    before = contents(storage)
    yield
    assert contents(storage) == before
    assert_clean(storage)


class Seeded:
    """A storage holding a pool with proxies, an active and a released lease, a health row."""

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        self.manager = RedisProxyManager(storage)
        self.pool = make_pool(storage, "seed")
        self.proxies = [make_proxy(self.pool, n, max_concurrency=2) for n in range(3)]
        storage.add_proxies_bulk(self.proxies)
        self.lease = storage.create_lease(self.proxies[0], "holder", 60)
        storage.release_lease(storage.create_lease(self.proxies[1], "holder", 60))
        storage.apply_health_check_result(
            HealthCheckResult(
                proxy_id=self.proxies[2].id,
                status=ProxyStatus.ACTIVE,
                latency_ms=12,
                protocol=ProxyProtocol.HTTP,
            )
        )
        storage.ensure_consumer("default")  # pharox's stock manager creates it first thing
        # Every selector once, so each availability set is built and its use stamped: a
        # refused call that walks a selector's order then writes nothing.
        for selector in SelectorStrategy:
            assert storage.find_available_proxy("seed", selector=selector) is not None
        assert_clean(storage)


def modified(proxy: Proxy, **fields: Any) -> Proxy:
    """A copy of ``proxy`` with fields set the way pydantic lets them through: unvalidated."""
    copy = proxy.model_copy()
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def unvalidated_filters(**fields: Any) -> ProxyFilters:
    """ProxyFilters without validation (model_construct), for values pydantic would refuse."""
    return ProxyFilters.model_construct(**fields)


def deep(levels: int, key: str = "all_of", leaf: Optional[ProxyFilters] = None) -> ProxyFilters:
    """A chain of ``levels`` nested filters (the outermost counts as level 1)."""
    node = leaf or ProxyFilters(country="AR")
    for _ in range(levels - 1):
        node = ProxyFilters.model_validate({key: [node]})
    return node


def wide(clauses: int) -> ProxyFilters:
    """One any_of with ``clauses - 1`` alternatives: ``clauses`` nodes in all."""
    return ProxyFilters(any_of=[ProxyFilters(country=f"C{i}") for i in range(clauses - 1)])
