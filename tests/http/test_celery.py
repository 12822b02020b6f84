"""A real Celery worker (prefork) holds proxies longer than their leases, with keep-alive.

Two proxies of one connection each, three worker processes, six tasks that each hold a
proxy for 1.5 s on leases of 0.6 s: a third task always waits for a proxy, so a lease that
keep-alive did not renew would be handed to it while its holder still runs. The intervals
the tasks report never overlap on one proxy, every lease was renewed and none lost, and
each worker process built its one manager when it started.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pharox import Proxy, ProxyPool, ProxyProtocol, ProxyStatus

from pharox_redis import RedisStorage
from pharox_redis.server import RedisServer, redis_server_binary

from ..conftest import NO_SERVER

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.real_redis, pytest.mark.slow, pytest.mark.timeout(120)]
HOLD_SECONDS, LEASE_SECONDS, TASKS, PROCESSES = 1.5, 0.6, 6, 3


@pytest.fixture
def celery_redis() -> Iterator[RedisServer]:
    """A private redis-server on TCP (the broker, the results and the pool, one db each)."""
    if redis_server_binary() is None:
        pytest.skip(NO_SERVER)
    with RedisServer(tcp=True) as server:
        yield server


@pytest.fixture
def worker_env(celery_redis: RedisServer) -> dict[str, str]:
    base = f"redis://127.0.0.1:{celery_redis.port}"
    env = dict(os.environ)
    env.update(
        PHAROX_TEST_BROKER=f"{base}/1",
        PHAROX_TEST_BACKEND=f"{base}/2",
        PHAROX_TEST_STORAGE=f"{base}/0",
        PHAROX_TEST_PREFIX=f"c{uuid.uuid4().hex[:8]}",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    return env


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            *("-m", "celery", "-A", "tests.http.celery_app", "worker"),
            *("--pool", "prefork", "--concurrency", str(PROCESSES)),
            *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            *("--loglevel", "warning"),
        ],
        cwd=REPO,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    log.close()


def test_tasks_hold_proxies_past_their_leases_without_overlap(
    worker_env: dict[str, str], worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    storage = RedisStorage.from_url(
        worker_env["PHAROX_TEST_STORAGE"], prefix=worker_env["PHAROX_TEST_PREFIX"]
    )
    pool = ProxyPool(name="celery")
    storage.save_pool(pool)
    storage.add_proxies_bulk(
        [
            Proxy(
                host=f"10.9.0.{n}",
                port=8080,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=ProxyStatus.ACTIVE,
                max_concurrency=1,
            )
            for n in (1, 2)
        ]
    )
    from .celery_app import app, hold_proxy

    app.conf.update(
        broker_url=worker_env["PHAROX_TEST_BROKER"],
        result_backend=worker_env["PHAROX_TEST_BACKEND"],
    )
    try:
        sent = [hold_proxy.delay(pool.name, HOLD_SECONDS, LEASE_SECONDS) for _ in range(TASKS)]
        results: list[dict[str, Any]] = [r.get(timeout=60) for r in sent]
        stats = storage.get_pool_stats(pool.name)
    finally:
        app.close()
        storage.client.close()
    assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    by_proxy: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        by_proxy.setdefault(result["proxy"], []).append((result["started"], result["ended"]))
    for spans in by_proxy.values():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert len(by_proxy) == 2
    assert [(r["renewed"], r["lost"]) for r in results] == [(True, False)] * TASKS
    assert {(r["built"], r["built_at_init"]) for r in results} == {(1, True)}
    assert len({r["pid"] for r in results}) >= 2  # the prefork pool's processes
    assert stats is not None and stats.total_leases == 0
