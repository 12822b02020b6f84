"""The Celery app of the worker test: a task that holds a proxy longer than its lease.

The worker imports it (``celery -A tests.http.celery_app worker``); the broker, the result
backend and the storage are on a private redis-server whose URLs come in the environment.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from pharox import RetryConfig

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.celery import WorkerProxies

BROKER = "PHAROX_TEST_BROKER"
BACKEND = "PHAROX_TEST_BACKEND"
STORAGE = "PHAROX_TEST_STORAGE"
PREFIX = "PHAROX_TEST_PREFIX"

app = Celery("pharox_test", broker=os.environ.get(BROKER), backend=os.environ.get(BACKEND))
app.conf.update(
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    result_serializer="json",
)


def build() -> RedisProxyManager:
    storage = RedisStorage.from_url(os.environ[STORAGE], prefix=os.environ[PREFIX])
    return RedisProxyManager(storage)


proxies = WorkerProxies(build).connect()
WAIT = RetryConfig(max_attempts=400, backoff_seconds=0.05, backoff_multiplier=1.0)


@app.task  # type: ignore[untyped-decorator]
def hold_proxy(pool_name: str, seconds: float, duration_seconds: float) -> dict[str, Any]:
    """Hold a proxy of the pool for ``seconds``, on leases of ``duration_seconds``."""
    with proxies.hold(pool_name, duration_seconds=duration_seconds, retry_config=WAIT) as leased:
        started = time.time()
        first_deadline = leased.lease.expires_at
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            leased.check()
            time.sleep(0.05)
        return {
            "pid": os.getpid(),
            "proxy": str(leased.proxy.id),
            "started": started,
            "ended": time.time(),
            "renewed": leased.lease.expires_at > first_deadline,
            "lost": leased.lost,
            "built": proxies.built,
            "built_at_init": proxies.built_at_init,
        }
