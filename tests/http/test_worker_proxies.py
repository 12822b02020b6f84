"""WorkerProxies without a worker: built once per process, lazily, and again after a fork."""

from __future__ import annotations

import os

import pytest

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.celery import WorkerProxies


def test_the_manager_is_built_once_per_process(
    storage: RedisStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[RedisProxyManager] = []

    def build() -> RedisProxyManager:
        made.append(RedisProxyManager(storage))
        return made[-1]

    proxies = WorkerProxies(build)
    assert made == []  # nothing before the first use
    first = proxies.manager
    assert proxies.manager is first and (len(made), proxies.built) == (1, 1)
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a child after a fork
    child = proxies.manager
    assert child is not first and (len(made), proxies.built) == (2, 1)
    proxies._on_process_init()
    assert proxies.built_at_init and proxies.manager is child


def test_hold_raises_when_no_proxy_is_free(storage: RedisStorage) -> None:
    from pharox import ProxyPool, ProxyUnavailableError

    storage.save_pool(ProxyPool(name="empty"))
    proxies = WorkerProxies(lambda: RedisProxyManager(storage))
    with pytest.raises(ProxyUnavailableError, match="empty"):
        with proxies.hold("empty"):
            pass
