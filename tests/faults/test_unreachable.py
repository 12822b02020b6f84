"""Redis unreachable: every call raises ``RedisStorageError`` in bounded time, never hangs.

Redis stopped (connection refused), stalled (a relay that accepts and never answers) or a
port nobody listens on. Acquire, release and a storage read raise ``RedisStorageError``
within the bound the retry policy sets over the configured socket timeout; pharox's retry
helpers on top surface that error, and when Redis comes back within the retry window the
call succeeds. Where a server comes back, the audit is clean.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest
import redis
from pharox import Lease, LeaseStatus, ProxyManager
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pharox_redis import RedisProxyManager, RedisStorage, RedisStorageError
from pharox_redis.connect import RETRIED_ERRORS
from pharox_redis.flows import RETRY_BASE_SECONDS
from pharox_redis.server import RedisServer, free_port

from ..helpers import seed_pool
from ..helpers.faults import connect, error_name
from ..helpers.relay import Relay

pytestmark = pytest.mark.real_redis

SOCKET_TIMEOUT = 0.5
SLACK = 1.0  # scheduling noise on a loaded 2-core machine
# from_url's retry policy (pharox_redis.connect.client_options): a refused or dropped
# connection is retried 3 times, 0.04, 0.08 and 0.16 s apart; a timeout is not retried.
BACKOFF = ExponentialBackoff(cap=0.5, base=0.02)
FROM_URL_RETRY = Retry(BACKOFF, 3, supported_errors=RETRIED_ERRORS)


def policy_bound(
    storage: RedisStorage, manager_retries: int, error: type[Exception], per_attempt: float
) -> float:
    """The longest a call may take under the retry policy when every attempt fails.

    redis-py makes ``retries + 1`` attempts with its backoff between them when it retries
    ``error``, one attempt otherwise; the manager repeats that ``manager_retries + 1``
    times with its own delays. ``per_attempt`` is what one failed attempt costs: the
    socket timeout when Redis stalls, ~0 when the connection is refused.
    """
    assert isinstance(storage.client, redis.Redis)
    assert storage.client.get_retry() == FROM_URL_RETRY, "from_url's retry policy changed"
    retries = FROM_URL_RETRY.get_retries() if issubclass(error, RETRIED_ERRORS) else 0
    client_call = (retries + 1) * per_attempt + sum(
        BACKOFF.compute(i) for i in range(1, retries + 1)
    )
    manager_delays = sum(RETRY_BASE_SECONDS * 2**i for i in range(manager_retries))
    return float((manager_retries + 1) * client_call + manager_delays)


def timed(call: Callable[[], Any]) -> tuple[float, Optional[BaseException]]:
    began = time.monotonic()
    try:
        call()
    except Exception as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param("stopped", marks=pytest.mark.slow),
        pytest.param("stalled", marks=pytest.mark.slow),
        "nobody-listens",
    ],
)
def test_unreachable_redis_raises_storage_error_in_bounded_time(
    outage: str, opened: list[RedisStorage]
) -> None:
    """Acquire, release and a storage read raise RedisStorageError, never hang.

    ``from_url(socket_timeout=0.5)``: each call fails within the retry policy's bound:
    redis-py re-tries a refused connection 3 times but not a timeout, and the manager
    sends an acquire or release up to 3 times. So a stalled Redis costs a storage read
    one socket timeout and an acquire three; a refused connection only the backoffs.
    The three calls run at once, each on its own client, to keep the test short.
    """
    with ExitStack() as stack:
        per_attempt = 0.0
        if outage == "nobody-listens":
            url = f"redis://127.0.0.1:{free_port()}/0"
            lease = Lease(
                proxy_id=uuid.uuid4(),
                consumer_id=uuid.uuid4(),
                pool_id=uuid.uuid4(),
                pool_name="pool",
                expires_at=datetime.now(timezone.utc) + timedelta(seconds=60),
            )
            server: Optional[RedisServer] = None
        else:
            server = stack.enter_context(RedisServer(tcp=True, appendonly=True))
            direct = connect(server.url, opened)
            seed_pool(direct, 1, max_concurrency=None)
            url = server.url
            relay = None
            if outage == "stalled":
                relay = stack.enter_context(Relay("127.0.0.1", server.port))
                url = relay.url
            taken = RedisProxyManager(connect(url, opened)).acquire_proxy("pool", "w", 60)
            assert taken is not None
            lease = taken
            if outage == "stalled":
                assert relay is not None
                relay.stall()
                per_attempt = SOCKET_TIMEOUT
            else:
                server.stop()
        acquirer = RedisProxyManager(connect(url, opened, socket_timeout=SOCKET_TIMEOUT))
        releaser = RedisProxyManager(connect(url, opened, socket_timeout=SOCKET_TIMEOUT))
        reader = connect(url, opened, socket_timeout=SOCKET_TIMEOUT)
        calls = {
            "acquire": (lambda: acquirer.acquire_proxy("pool", "w", 60), acquirer.policy.retries),
            "release": (lambda: releaser.release_proxy(lease), releaser.policy.retries),
            "stats": (lambda: reader.get_pool_stats("pool"), 0),
        }
        with ThreadPoolExecutor(len(calls)) as executor:
            futures = {name: executor.submit(timed, call) for name, (call, _) in calls.items()}
            outcomes = {name: f.result(timeout=60) for name, f in futures.items()}
        print(
            f"\n{outage}: "
            + ", ".join(f"{n} {e:.2f}s {error_name(x)}" for n, (e, x) in outcomes.items() if x)
        )
        expected = redis.TimeoutError if outage == "stalled" else redis.ConnectionError
        for name, (elapsed, exc) in outcomes.items():
            assert isinstance(exc, RedisStorageError), (name, exc)
            assert isinstance(exc.__cause__, expected), (name, repr(exc.__cause__))
            storage = {"acquire": acquirer.storage, "release": releaser.storage}.get(name, reader)
            bound = policy_bound(storage, calls[name][1], expected, per_attempt)
            assert elapsed <= bound + SLACK, (name, elapsed, bound)
            if outage == "stalled":
                assert elapsed >= SOCKET_TIMEOUT, (name, elapsed)
        if server is not None:
            if relay is not None:
                relay.close()
            else:
                server.start()
            report = direct.audit()
            assert report.drift == ()
            assert report.active_leases == 1, report  # the one taken before the outage


@pytest.mark.slow
def test_retry_helpers_surface_an_outage_and_ride_out_a_short_one(
    opened: list[RedisStorage],
) -> None:
    """pharox's retry helpers on top of an outage.

    They retry only while no proxy is free, so with Redis down they raise the storage's
    ``RedisStorageError`` at once (sync manager and pharox's stock manager alike). When
    Redis comes back within the client's own retry window the same helpers succeed.
    """
    with RedisServer(tcp=True, appendonly=True) as server:
        storage = connect(server.url, opened, socket_timeout=SOCKET_TIMEOUT)
        pool = seed_pool(storage, 2, max_concurrency=1)
        manager = RedisProxyManager(storage)
        stock = ProxyManager(storage)
        server.stop()
        refused = policy_bound(storage, manager.policy.retries, redis.ConnectionError, 0.0) + SLACK

        def with_retrying(target: Any) -> None:
            with target.with_retrying_lease(pool.name, "w", 60, max_attempts=3):
                raise AssertionError("entered the block without Redis")

        for helper in (
            lambda: manager.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=3),
            lambda: with_retrying(manager),
            lambda: stock.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=3),
            lambda: with_retrying(stock),
        ):
            elapsed, exc = timed(helper)
            assert isinstance(exc, RedisStorageError), repr(exc)
            assert isinstance(exc.__cause__, redis.ConnectionError), repr(exc.__cause__)
            assert elapsed < refused, elapsed

        outage = 0.3
        comebacks = []
        for attempt in range(2):
            if attempt:
                server.stop()
            back = threading.Timer(outage, server.start)
            began = time.monotonic()
            back.start()
            try:
                if attempt == 0:
                    lease = manager.acquire_proxy_with_retry(pool.name, "w", 60, max_attempts=2)
                    assert lease is not None
                else:
                    with manager.with_retrying_lease(pool.name, "w", 60) as inside:
                        assert inside is not None
                comebacks.append(round(time.monotonic() - began, 3))
            finally:
                back.join()
            assert comebacks[-1] >= outage
        print(f"\nretry helpers: rode out {outage}s outages in {comebacks} s")

        assert lease is not None and lease.status is LeaseStatus.ACTIVE
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 1, report  # `lease`; with_retrying_lease released its own
        manager.release_proxy(lease)
        report = storage.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report
