"""One GET through a proxy with each client library, built by pharox_redis.http."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import aiohttp
import httpx
import requests

from pharox_redis.http import (
    aiohttp_connector,
    aiohttp_kwargs,
    httpx_proxy,
    requests_proxies,
    urllib3_manager,
)
from pharox_redis.http.endpoint import ProxyEndpoint

Fetch = Callable[[ProxyEndpoint, str], tuple[int, str]]
TIMEOUT = 10.0


def via_urllib3(ep: ProxyEndpoint, url: str) -> tuple[int, str]:
    manager = urllib3_manager(ep, timeout=TIMEOUT)
    try:
        response = manager.request("GET", url, retries=False)
        return response.status, response.data.decode()
    finally:
        manager.clear()


def via_requests(ep: ProxyEndpoint, url: str) -> tuple[int, str]:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(url, proxies=requests_proxies(ep), timeout=TIMEOUT)
        return response.status_code, response.text


def via_httpx(ep: ProxyEndpoint, url: str) -> tuple[int, str]:
    with httpx.Client(proxy=httpx_proxy(ep), timeout=TIMEOUT, trust_env=False) as client:
        response = client.get(url)
        return response.status_code, response.text


def via_aiohttp(ep: ProxyEndpoint, url: str) -> tuple[int, str]:
    async def fetch() -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        kwargs: dict[str, Any] = {}
        session_kwargs: dict[str, Any] = {"timeout": timeout, "trust_env": False}
        if ep.is_socks:
            session_kwargs["connector"] = aiohttp_connector(ep)
        else:
            kwargs = aiohttp_kwargs(ep, url)
        async with (
            aiohttp.ClientSession(**session_kwargs) as session,
            session.get(url, **kwargs) as response,
        ):
            return response.status, await response.text()

    return asyncio.run(fetch())


FETCHERS: dict[str, Fetch] = {
    "urllib3": via_urllib3,
    "requests": via_requests,
    "httpx": via_httpx,
    "aiohttp": via_aiohttp,
}
