"""Clients built from a lease: urllib3, requests, httpx and aiohttp, each told the login right.

Every builder takes a :class:`~pharox_redis.LeasedProxy`, a pharox ``Proxy`` or a
:class:`ProxyEndpoint` and works for HTTP, HTTPS (TLS to the proxy), SOCKS4 and SOCKS5
proxies where the library can:

========== ============================ ============================================
library    HTTP / HTTPS proxy           SOCKS
========== ============================ ============================================
urllib3    ``ProxyManager``, login in   ``SOCKSProxyManager`` (PySocks), ``socks5h``
           ``proxy_headers``            / ``socks4a`` by default (remote DNS)
requests   ``proxies`` URL, login       the same URL with ``socks5h`` (PySocks)
           percent-encoded
httpx      ``httpx.Proxy(url, auth=)``  SOCKS5 only (socksio); the proxy resolves
aiohttp    ``proxy=`` and a             ``aiohttp_socks.ProxyConnector`` (SOCKS4/5,
           ``Proxy-Authorization``      ``rdns`` by default)
           header
========== ============================ ============================================

The libraries are imported when a builder is called, never by ``import pharox_redis``.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from pharox import Proxy

from ..leased_proxy import LeasedProxy
from .endpoint import ProxyEndpoint
from .extras import require

if TYPE_CHECKING:
    import httpx
    import urllib3

Source = Union[LeasedProxy, Proxy, ProxyEndpoint]


def urllib3_manager(
    proxy: Source, *, remote_dns: bool = True, **pool_kwargs: Any
) -> urllib3.PoolManager:
    """Return a urllib3 ``ProxyManager`` (or ``SOCKSProxyManager``) that goes through ``proxy``.

    urllib3 ignores credentials in a proxy URL (the proxy answers 407): for an HTTP(S)
    proxy the login goes in ``proxy_headers`` (as ``urllib3.util.make_headers(
    proxy_basic_auth=...)`` builds it, under the canonical name ``Proxy-Authorization``);
    for SOCKS as ``username``/``password``.

    Parameters
    ----------
    proxy:
        A LeasedProxy, a pharox Proxy or a ProxyEndpoint.
    remote_dns:
        For SOCKS, let the proxy resolve host names (``socks5h``/``socks4a``, the default).
    **pool_kwargs:
        Passed to the manager (``num_pools``, ``maxsize``, ``timeout``, ``headers``...).
        ``proxy_headers`` given here are sent too.

    """
    ep = ProxyEndpoint.of(proxy)
    if ep.is_socks:
        socks = require("urllib3.contrib.socks", "http")
        manager: urllib3.PoolManager = socks.SOCKSProxyManager(
            ep.url(credentials=False, remote_dns=remote_dns),
            username=ep.username,
            password=ep.password,
            **pool_kwargs,
        )
        return manager
    lib = require("urllib3", "http")
    headers = dict(pool_kwargs.pop("proxy_headers", None) or {})
    headers.update(ep.proxy_headers())
    proxy_manager: urllib3.PoolManager = lib.ProxyManager(
        ep.url(credentials=False), proxy_headers=headers, **pool_kwargs
    )
    return proxy_manager


def requests_proxies(proxy: Source, *, remote_dns: bool = True) -> dict[str, str]:
    """Return a requests ``proxies`` mapping: the same proxy for ``http`` and ``https``.

    The login is in the URL, percent-encoded (requests decodes it). SOCKS URLs need
    PySocks (``pharox-redis[http]``) and use ``socks5h``/``socks4a`` unless
    ``remote_dns`` is False.

    Examples
    --------
    >>> requests.get(url, proxies=requests_proxies(leased), timeout=10)  # doctest: +SKIP

    """
    url = ProxyEndpoint.of(proxy).url(remote_dns=remote_dns)
    return {"http": url, "https": url}


def httpx_proxy(proxy: Source) -> httpx.Proxy:
    """Return an ``httpx.Proxy`` for ``httpx.Client(proxy=...)``/``AsyncClient(proxy=...)``.

    The login goes as ``auth=`` (never through the URL). httpx speaks SOCKS5 (with
    ``pharox-redis[httpx]``, which brings socksio; the proxy resolves host names) but not
    SOCKS4: a SOCKS4 proxy raises ValueError.
    """
    ep = ProxyEndpoint.of(proxy)
    if ep.scheme == "socks4":
        raise ValueError("httpx has no SOCKS4: use urllib3_manager or aiohttp_connector")
    lib = require("httpx", "httpx")
    auth = (ep.username, ep.password or "") if ep.username is not None else None
    made: httpx.Proxy = lib.Proxy(ep.url(credentials=False, remote_dns=False), auth=auth)
    return made


def aiohttp_kwargs(proxy: Source, url: str) -> dict[str, Any]:
    """Return the arguments of an aiohttp request to ``url`` through an HTTP(S) proxy.

    ``session.get(url, **aiohttp_kwargs(leased, url))``: ``proxy=`` (no login in it) and
    the login as a ``Proxy-Authorization`` header where aiohttp sends it to the proxy:
    ``proxy_headers=`` go with the CONNECT of an ``https://`` URL only, so for an
    ``http://`` URL (forwarded by the proxy, which reads the request's own headers) the
    header is in ``headers=`` (merge yours into it). aiohttp 3.14 deprecates
    ``proxy_auth=BasicAuth(...)``, the older way. aiohttp has no SOCKS of its own: a SOCKS
    proxy raises ValueError; use :func:`aiohttp_connector` (aiohttp-socks) for it.
    """
    ep = ProxyEndpoint.of(proxy)
    if ep.is_socks:
        raise ValueError(
            "aiohttp has no SOCKS: use aiohttp.ClientSession(connector=aiohttp_connector(proxy))"
        )
    kwargs: dict[str, Any] = {"proxy": ep.url(credentials=False)}
    login = ep.proxy_headers()
    if login:
        tunnelled = urlsplit(url).scheme.lower() in ("https", "wss")
        kwargs["proxy_headers" if tunnelled else "headers"] = login
    return kwargs


def aiohttp_connector(proxy: Source, *, remote_dns: bool = True, **kwargs: Any) -> Any:
    """Return an ``aiohttp_socks.ProxyConnector`` for a session that goes through ``proxy``.

    Any kind of proxy (SOCKS4, SOCKS5, HTTP by CONNECT); the login is passed apart from the
    URL, and SOCKS lets the proxy resolve host names unless ``remote_dns`` is False. Needs
    aiohttp-socks (``pharox-redis[aiohttp]``); create it inside the running event loop.
    """
    ep = ProxyEndpoint.of(proxy)
    socks = require("aiohttp_socks", "aiohttp")
    kinds = {
        "socks4": socks.ProxyType.SOCKS4,
        "socks5": socks.ProxyType.SOCKS5,
        "http": socks.ProxyType.HTTP,
        "https": socks.ProxyType.HTTP,
    }
    if ep.scheme == "https":
        kwargs.setdefault("proxy_ssl", ssl.create_default_context())
    return socks.ProxyConnector(
        proxy_type=kinds[ep.scheme],
        host=ep.host,
        port=ep.port,
        username=ep.username,
        password=ep.password,
        rdns=remote_dns,
        **kwargs,
    )
