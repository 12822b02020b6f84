"""HTTP through leased proxies: clients built from a lease, and clients that lease per request.

Building blocks (any LeasedProxy or pharox Proxy, HTTP, HTTPS, SOCKS4, SOCKS5):
:func:`urllib3_manager`, :func:`requests_proxies`, :func:`httpx_proxy`,
:func:`aiohttp_kwargs`, :func:`aiohttp_connector`, and :class:`ProxyEndpoint` under them.

Leasing clients: :class:`LeasingClient` (sync, urllib3) and :class:`AsyncLeasingClient`
(async, httpx) lease a proxy per request (or per ``session()``), send through it, and
release it with an :class:`~pharox_redis.Outcome` the pool acts on (cool-downs, blocks per
domain, the latency average).

The client libraries are optional extras: ``pharox-redis[http]`` (urllib3, requests,
PySocks), ``[httpx]``, ``[aiohttp]`` (with aiohttp-socks); importing this module needs
none of them, each is imported when first used.
"""

from __future__ import annotations

from .async_client import AsyncLeasedSession, AsyncLeasingClient
from .clients import (
    aiohttp_connector,
    aiohttp_kwargs,
    httpx_proxy,
    requests_proxies,
    urllib3_manager,
)
from .endpoint import ProxyEndpoint, endpoint
from .leasing import LeaseSettings
from .pools import ClientCache
from .rules import BLOCK_STATUSES, OutcomeRules, target_of
from .sync_client import LeasedSession, LeasingClient

__all__ = [
    "BLOCK_STATUSES",
    "AsyncLeasedSession",
    "AsyncLeasingClient",
    "ClientCache",
    "LeaseSettings",
    "LeasedSession",
    "LeasingClient",
    "OutcomeRules",
    "ProxyEndpoint",
    "aiohttp_connector",
    "aiohttp_kwargs",
    "endpoint",
    "httpx_proxy",
    "requests_proxies",
    "target_of",
    "urllib3_manager",
]
