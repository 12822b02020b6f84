"""Every client library authenticates through real proxies, HTTP and SOCKS5, with the builders.

The origin names the proxy that carried each request (its source address), so a request
that went direct, or through another proxy, fails the test; pproxy refuses a missing or
wrong login (``--auth 0``), so a client that drops the credentials fails it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import aiohttp
import pytest
import requests
import urllib3
from pharox import ProxyProtocol

from pharox_redis.http import aiohttp_connector, urllib3_manager
from pharox_redis.http.endpoint import ProxyEndpoint

from .conftest import LOGINS
from .fetchers import FETCHERS
from .servers import Origin, ProxyServer

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
@pytest.mark.parametrize("login", list(LOGINS))
@pytest.mark.parametrize("library", list(FETCHERS))
def test_every_client_goes_through_the_proxy_with_its_login(
    library: str,
    login: str,
    scheme: str,
    proxy_servers: dict[str, ProxyServer],
    origin: Origin,
) -> None:
    server = proxy_servers[login]
    protocol = ProxyProtocol(scheme)
    ep = ProxyEndpoint.of(server.proxy(uuid.uuid4(), protocol))
    status, body = FETCHERS[library](ep, origin.url("localhost"))
    assert (status, body) == (200, f"{server.host} localhost")
    assert origin.sources() == [server.host]


@pytest.mark.parametrize("library", ["urllib3", "requests", "httpx"])
def test_a_wrong_password_is_refused(
    library: str, proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    server = proxy_servers["spaced"]
    ep = dataclasses.replace(ProxyEndpoint.of(server.proxy(uuid.uuid4())), password="p@ss w:rd!")
    status, _ = FETCHERS[library](ep, origin.url())
    assert status == 407
    assert origin.sources() == []


def test_the_naive_ways_fail_where_the_builders_work(
    proxy_servers: dict[str, ProxyServer], origin: Origin
) -> None:
    """The two bugs of the issue, on a real proxy: what the builders are for."""
    server = proxy_servers["spaced"]
    proxy = server.proxy(uuid.uuid4())
    # urllib3 ignores the login in a proxy URL: 407.
    naive = urllib3.ProxyManager(ProxyEndpoint.of(proxy).url())
    assert naive.request("GET", origin.url(), retries=False).status == 407
    naive.clear()
    # pharox's Proxy.url quotes with quote_plus: the space becomes '+', decoded literally.
    assert "bob+smith" in proxy.url
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(origin.url(), proxies={"http": proxy.url}, timeout=10)
    assert response.status_code == 407
    assert origin.sources() == []


def test_socks4_with_local_dns(proxy_servers: dict[str, ProxyServer], origin: Origin) -> None:
    """pproxy speaks SOCKS4 without the 4a extension: the client resolves (remote_dns=False)."""
    server = proxy_servers["open"]
    ep = ProxyEndpoint.of(server.proxy(uuid.uuid4(), ProxyProtocol.SOCKS4))
    manager = urllib3_manager(ep, remote_dns=False, timeout=10)
    assert manager.request("GET", origin.url(), retries=False).status == 200
    manager.clear()

    async def fetch() -> int:
        connector = aiohttp_connector(ep, remote_dns=False)
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False) as session,
            session.get(origin.url()) as response,
        ):
            return response.status

    assert asyncio.run(fetch()) == 200
    assert origin.sources() == [server.host] * 2
