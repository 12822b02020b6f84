"""The leasing clients on real proxies and a real Redis: what went through which proxy.

Counts only: the origin records the proxy (source address) of every request and the most
requests it ever had in flight per proxy; the pool's outcome stats say what was cooled down
or blocked.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import redis.asyncio
import urllib3
from pharox import Proxy, ProxyProtocol, ProxyStatus, ProxyUnavailableError, SelectorStrategy

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeaseLostError,
    OutcomeStats,
    RedisProxyManager,
    RedisStorage,
)
from pharox_redis.http import AsyncLeasingClient, LeasingClient
from pharox_redis.server import RedisServer

from .conftest import FAST_POLICY, seed_pool
from .servers import Origin, ProxyServer, free_port

pytestmark = [pytest.mark.real_redis, pytest.mark.timeout(90)]
RR = SelectorStrategy.ROUND_ROBIN


@pytest.fixture
def manager(http_storage: RedisStorage) -> RedisProxyManager:
    return RedisProxyManager(http_storage)


@pytest.fixture
def servers(proxy_servers: dict[str, ProxyServer]) -> list[ProxyServer]:
    return list(proxy_servers.values())


def outcomes(storage: RedisStorage, pool_name: str) -> OutcomeStats:
    found = storage.get_outcome_stats(pool_name)
    assert found is not None
    return found


def dead_proxy() -> Proxy:
    """A proxy at an address where nothing listens: every connection is refused."""
    host = "127.0.0.9"
    return Proxy(
        host=host,
        port=free_port(host),
        protocol=ProxyProtocol.HTTP,
        pool_id=uuid.uuid4(),
        status=ProxyStatus.ACTIVE,
    )


def test_a_request_and_a_session_go_through_leased_proxies(
    manager: RedisProxyManager, servers: list[ProxyServer], origin: Origin
) -> None:
    pool = seed_pool(manager.storage, servers)
    hosts = {s.host for s in servers}
    with LeasingClient(manager, pool.name, duration_seconds=30) as client:
        response = client.request("GET", origin.url("localhost"))
        assert response.status == 200
        with client.session() as session:
            bodies = [session.get(origin.url()).data.decode() for _ in range(3)]
            assert manager.storage.get_pool_stats(pool.name).total_leases == 1  # type: ignore[union-attr]
    sources = origin.sources()
    assert len(sources) == 4 and set(sources) <= hosts
    assert len(set(sources[1:])) == 1  # the session's requests went through its one proxy
    assert bodies == [f"{sources[1]} 127.0.0.1"] * 3
    found = outcomes(manager.storage, pool.name)
    assert (found.stats.total_leases, found.cooling, found.blocked) == (0, 0, 0)


@pytest.mark.parametrize("protocol", [ProxyProtocol.HTTP, ProxyProtocol.SOCKS5])
def test_sync_and_async_clients_log_in_over_http_and_socks5(
    protocol: ProxyProtocol,
    http_storage: RedisStorage,
    redis_server: RedisServer,
    proxy_servers: dict[str, ProxyServer],
    origin: Origin,
) -> None:
    spaced = proxy_servers["spaced"]  # a user name with a space, a password with '@' and ':'
    pool = seed_pool(http_storage, [spaced.proxy(uuid.uuid4(), protocol)])
    with LeasingClient(RedisProxyManager(http_storage), pool.name) as client:
        assert client.get(origin.url()).status == 200

    async def run() -> int:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        storage = AsyncRedisStorage(client, prefix=http_storage.context.keys.prefix)
        try:
            async with AsyncLeasingClient(AsyncRedisProxyManager(storage), pool.name) as leasing:
                return (await leasing.get(origin.url())).status_code
        finally:
            await client.aclose()

    assert asyncio.run(run()) == 200
    assert origin.sources() == [spaced.host] * 2


def hammer(client: LeasingClient, url: str, requests: int, deadline: float) -> int:
    """Send ``requests`` requests, waiting while no proxy is free; return those answered 200."""
    done = 0
    while done < requests and time.monotonic() < deadline:
        try:
            if client.get(url).status == 200:
                done += 1
        except ProxyUnavailableError:
            time.sleep(0.002)
    return done


def test_no_proxy_carries_more_requests_than_its_max_concurrency(
    manager: RedisProxyManager, servers: list[ProxyServer], origin: Origin
) -> None:
    pool = seed_pool(manager.storage, [s.proxy(uuid.uuid4(), max_concurrency=2) for s in servers])
    threads, each = 12, 5
    results: list[int] = []
    deadline = time.monotonic() + 60
    with LeasingClient(manager, pool.name, duration_seconds=30, maxsize=4) as client:

        def work() -> None:
            results.append(hammer(client, origin.url(ms=40), each, deadline))

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(70)
        assert client.clients.made == len(servers)  # one urllib3 manager per proxy, reused
    assert results == [each] * threads
    assert len(origin.sources()) == threads * each
    assert set(origin.peak) == {s.host for s in servers}
    assert max(origin.peak.values()) == 2  # reached, and never passed
    assert manager.storage.get_pool_stats(pool.name).total_leases == 0  # type: ignore[union-attr]


def test_no_proxy_carries_more_than_its_max_concurrency_async(
    http_storage: RedisStorage,
    redis_server: RedisServer,
    servers: list[ProxyServer],
    origin: Origin,
) -> None:
    pool = seed_pool(http_storage, [s.proxy(uuid.uuid4(), max_concurrency=2) for s in servers])
    tasks, each = 12, 5

    async def run() -> list[int]:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        storage = AsyncRedisStorage(client, prefix=http_storage.context.keys.prefix)
        deadline = time.monotonic() + 60
        try:
            async with AsyncLeasingClient(
                AsyncRedisProxyManager(storage), pool.name, duration_seconds=30
            ) as leasing:

                async def work() -> int:
                    done = 0
                    while done < each and time.monotonic() < deadline:
                        try:
                            if (await leasing.get(origin.url(ms=40))).status_code == 200:
                                done += 1
                        except ProxyUnavailableError:
                            await asyncio.sleep(0.002)
                    return done

                results = await asyncio.gather(*(work() for _ in range(tasks)))
                assert leasing.clients.made == len(servers)
                return results
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [each] * tasks
    assert len(origin.sources()) == tasks * each
    assert max(origin.peak.values()) == 2


def test_a_refusing_proxy_is_cooled_down_then_returns(
    manager: RedisProxyManager, origin: Origin
) -> None:
    dead = dead_proxy()
    pool = seed_pool(manager.storage, [dead])
    with LeasingClient(manager, pool.name, max_tries=2, timeout=5) as client:
        with pytest.raises(urllib3.exceptions.HTTPError):
            client.get(origin.url())  # refused: reported failed, rotated, nothing left
        assert outcomes(manager.storage, pool.name).cooling == 1
        with pytest.raises(ProxyUnavailableError):
            client.get(origin.url())  # cooled down: not leased
        revived = ProxyServer(str(dead.host)).start(dead.port)  # the proxy comes back up
        try:
            time.sleep(FAST_POLICY.base_seconds + 0.1)  # the first cool-down ends
            assert client.get(origin.url()).status == 200
        finally:
            revived.stop()
    assert origin.sources() == [str(dead.host)]
    assert outcomes(manager.storage, pool.name).cooling == 0


def test_a_request_rotates_away_from_a_refusing_proxy(
    manager: RedisProxyManager, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    live = proxy_servers["open"]
    pool = seed_pool(manager.storage, [dead_proxy(), live])
    with LeasingClient(manager, pool.name, selector=RR, max_tries=2) as client:
        statuses = [client.get(origin.url()).status for _ in range(4)]
    assert statuses == [200] * 4
    assert origin.sources() == [live.host] * 4
    assert outcomes(manager.storage, pool.name).cooling == 1  # the dead one was tried


def test_a_proxy_blocked_for_one_domain_still_serves_another(
    manager: RedisProxyManager, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    banned, other = proxy_servers["alice"], proxy_servers["spaced"]
    pool = seed_pool(manager.storage, [banned, other])
    origin.banned.add((banned.host, "localhost"))  # the site bans one proxy's address
    with LeasingClient(manager, pool.name, selector=RR, max_tries=2) as client:
        for_localhost = [client.get(origin.url("localhost")).status for _ in range(4)]
        assert outcomes(manager.storage, pool.name).blocked == 1
        for_ip = [client.get(origin.url("127.0.0.1")).status for _ in range(4)]
    assert for_localhost == for_ip == [200] * 4
    # localhost: the banned proxy answered 403 once, was blocked for it, never leased again
    assert origin.sources("localhost").count(banned.host) == 1
    assert origin.sources("localhost").count(other.host) == 4
    # 127.0.0.1: both proxies, in turn
    assert sorted(origin.sources("127.0.0.1")) == sorted([banned.host, other.host] * 2)
    held = manager.acquire(pool.name, target="localhost")
    assert held is not None and str(held.proxy.host) == other.host


def test_a_request_on_a_lost_lease_is_not_sent(
    manager: RedisProxyManager, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    pool = seed_pool(manager.storage, [proxy_servers["open"]])
    with LeasingClient(manager, pool.name, duration_seconds=0.3) as client:
        with pytest.raises(LeaseLostError):
            with client.session() as session:
                assert session.get(origin.url()).status == 200
                time.sleep(0.35)  # past the lease's deadline, no keep-alive
                session.get(origin.url())
    assert len(origin.sources()) == 1


@pytest.mark.parametrize(("kept", "made"), [(1, 4), (2, 2)])
def test_clients_are_kept_per_proxy_in_a_bounded_lru(
    kept: int,
    made: int,
    manager: RedisProxyManager,
    proxy_servers: dict[str, ProxyServer],
    origin: Origin,
) -> None:
    pool = seed_pool(manager.storage, [proxy_servers["open"], proxy_servers["alice"]])
    with LeasingClient(manager, pool.name, selector=RR, max_clients=kept) as client:
        assert [client.get(origin.url()).status for _ in range(4)] == [200] * 4
        assert (client.clients.made, len(client.clients)) == (made, kept)
    assert len(set(origin.sources())) == 2


def test_a_session_reports_its_worst_outcome(
    manager: RedisProxyManager, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    banned = proxy_servers["alice"]
    pool = seed_pool(manager.storage, [banned])
    origin.banned.add((banned.host, "localhost"))
    with LeasingClient(manager, pool.name) as client, client.session() as session:
        assert session.get(origin.url("localhost")).status == 403
        assert session.get(origin.url("127.0.0.1")).status == 200  # a later ok erases nothing
    found = outcomes(manager.storage, pool.name)
    assert (found.blocked, found.cooling, found.stats.total_leases) == (1, 0, 0)
    assert manager.acquire(pool.name, target="localhost") is None


def test_the_async_client_rotates_and_holds_sessions(
    http_storage: RedisStorage,
    redis_server: RedisServer,
    proxy_servers: dict[str, ProxyServer],
    origin: Origin,
) -> None:
    live = proxy_servers["spaced"]
    pool = seed_pool(http_storage, [dead_proxy(), live])

    async def run() -> list[int]:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        storage = AsyncRedisStorage(client, prefix=http_storage.context.keys.prefix)
        try:
            manager = AsyncRedisProxyManager(storage)
            async with AsyncLeasingClient(manager, pool.name, selector=RR, max_tries=2) as leasing:
                statuses = [(await leasing.get(origin.url())).status_code for _ in range(3)]
                async with leasing.session(keep_alive=True) as session:
                    statuses += [(await session.get(origin.url())).status_code for _ in range(2)]
            return statuses
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [200] * 5
    assert origin.sources() == [live.host] * 5
    found = outcomes(http_storage, pool.name)
    assert (found.cooling, found.stats.total_leases) == (1, 0)


def test_a_try_that_raises_releases_its_lease(
    manager: RedisProxyManager, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    pool = seed_pool(manager.storage, [proxy_servers["open"]])
    with LeasingClient(manager, pool.name) as client:
        with pytest.raises(TypeError):
            client.request("GET", origin.url(), no_such_argument=1)
        assert client.get(origin.url()).status == 200  # the proxy was given back
    found = outcomes(manager.storage, pool.name)
    assert (found.stats.total_leases, found.cooling) == (0, 0)
