"""``AsyncLeasingClient``: each httpx request through a leased proxy, released with its outcome.

Async requests go through httpx: it is well kept, pools HTTP/1.1 keep-alive connections
per client (httpcore), takes a proxy per client with its login apart from the URL
(``httpx.Proxy(url, auth=...)``), speaks SOCKS5 with socksio, and has the same API sync and
async. aiohttp needs a plugin for SOCKS and now deprecates ``proxy_auth``; its arguments
are still built by :func:`~pharox_redis.http.aiohttp_kwargs` for those who use it. One
``httpx.AsyncClient`` is kept per proxy in a bounded LRU
(:class:`~pharox_redis.http.pools.ClientCache`), closed when evicted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Optional

from pharox import ProxyFilters, SelectorStrategy

from ..async_manager import AsyncRedisProxyManager
from ..leased_proxy import LeasedProxy
from ..outcome import Outcome
from .clients import httpx_proxy
from .endpoint import ProxyEndpoint
from .extras import require
from .leasing import DEFAULT_TIMEOUT, Acquire, LeaseSettings, Release, Send, Sent, Step, tries
from .pools import ClientCache
from .rules import DEFAULT_RULES, OutcomeRules, target_of, worse

if TYPE_CHECKING:
    import httpx


class AsyncLeasingClient:
    """Send each request through a proxy leased from a pool, and release it with its outcome.

    The async twin of :class:`~pharox_redis.http.LeasingClient`, on httpx; the same
    arguments, except ``**client_kwargs`` go to each ``httpx.AsyncClient`` (``timeout``
    defaults to 30 s; ``verify``, ``headers``, ``http2``...). SOCKS4 proxies are not
    supported by httpx (a request through one raises ValueError).

    Examples
    --------
    >>> async with AsyncLeasingClient(manager, "scrapers", duration_seconds=30) as client:
    ...     response = await client.request("GET", "https://example.com/")  # doctest: +SKIP

    """

    def __init__(
        self,
        manager: AsyncRedisProxyManager,
        pool_name: str,
        *,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 60.0,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        wait: Optional[float] = None,
        max_tries: int = 3,
        rules: OutcomeRules = DEFAULT_RULES,
        max_clients: int = 16,
        **client_kwargs: Any,
    ) -> None:
        self._httpx = require("httpx", "httpx")
        self.manager = manager
        self.settings = LeaseSettings(
            pool_name, consumer_name, duration_seconds, filters, selector, wait, max_tries, rules
        )
        self.clients: ClientCache[httpx.AsyncClient] = ClientCache(max_clients)
        client_kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        self._client_kwargs = client_kwargs

    # ------------------------------------------------------------------ requests

    async def request(
        self, method: str, url: str, *, target: Optional[str] = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request through a leased proxy; return the response, its body read.

        ``target`` and the errors as for :meth:`LeasingClient.request
        <pharox_redis.http.LeasingClient.request>`; ``**kwargs`` go to httpx's
        ``request`` (``headers``, ``content``, ``json``, ``timeout``...); the last
        transport error raised is an ``httpx.TransportError``.
        """
        domain = target if target is not None else target_of(url)
        flow = tries(self.settings, domain)
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                step = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = await self._perform(step, method, url, domain, kwargs)
            except BaseException as exc:
                error = exc

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """Send a GET request (see :meth:`request`)."""
        return await self.request("GET", url, **kwargs)

    @asynccontextmanager
    async def session(
        self, target: Optional[str] = None, *, keep_alive: bool = False
    ) -> AsyncIterator[AsyncLeasedSession]:
        """Hold one proxy for a block of requests; release it with their worst outcome.

        As :meth:`LeasingClient.session <pharox_redis.http.LeasingClient.session>`.
        """
        settings = self.settings
        async with self.manager.with_proxy(
            settings.pool_name, keep_alive=keep_alive, **settings.acquire_kwargs(target)
        ) as leased:
            if leased is None:
                raise settings.none_free(target)
            key = ProxyEndpoint.of(leased)
            client = await self._borrow(key)
            try:
                yield AsyncLeasedSession(self, leased, client, target)
            finally:
                await self._give_back(key, client)

    async def aclose(self) -> None:
        """Close the kept clients (those in use close when given back)."""
        for client in self.clients.clear():
            await client.aclose()

    async def __aenter__(self) -> AsyncLeasingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ internals

    async def _perform(
        self, step: Step, method: str, url: str, domain: str, kwargs: dict[str, Any]
    ) -> Any:
        manager = self.manager
        if isinstance(step, Send):
            return await self._send(step.leased, method, url, domain, kwargs)
        if isinstance(step, Acquire):
            return await manager.acquire(self.settings.pool_name, **step.kwargs)
        if isinstance(step, Release):
            return await manager.release_proxy(step.leased, outcome=step.outcome)
        return await manager.rotate(step.leased, **step.kwargs)

    async def _borrow(self, key: ProxyEndpoint) -> httpx.AsyncClient:
        client, closing = self.clients.borrow(key, lambda: self._build(key))
        for evicted in closing:
            await evicted.aclose()
        return client

    async def _give_back(self, key: ProxyEndpoint, client: httpx.AsyncClient) -> None:
        for evicted in self.clients.give_back(key, client):
            await evicted.aclose()

    def _build(self, key: ProxyEndpoint) -> httpx.AsyncClient:
        made: httpx.AsyncClient = self._httpx.AsyncClient(
            proxy=httpx_proxy(key), **self._client_kwargs
        )
        return made

    async def _send(
        self, leased: LeasedProxy, method: str, url: str, domain: str, kwargs: dict[str, Any]
    ) -> Sent[httpx.Response]:
        key = ProxyEndpoint.of(leased)
        client = await self._borrow(key)
        try:
            return await self._send_with(client, leased, method, url, domain, kwargs)
        finally:
            await self._give_back(key, client)

    async def _send_with(
        self,
        client: httpx.AsyncClient,
        leased: LeasedProxy,
        method: str,
        url: str,
        domain: str,
        kwargs: dict[str, Any],
    ) -> Sent[httpx.Response]:
        leased.check()
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except self._httpx.TransportError as exc:
            return Sent(None, exc, Outcome.failed())
        latency_ms = (time.perf_counter() - started) * 1000.0
        outcome = self.settings.rules.judge(response.status_code, response, domain, latency_ms)
        return Sent(response, None, outcome)


class AsyncLeasedSession:
    """Requests through the one proxy an :meth:`AsyncLeasingClient.session` block holds.

    Attributes as for :class:`~pharox_redis.http.LeasedSession`.
    """

    def __init__(
        self,
        owner: AsyncLeasingClient,
        leased: LeasedProxy,
        client: httpx.AsyncClient,
        target: Optional[str],
    ) -> None:
        self.leased = leased
        self.outcome: Optional[Outcome] = None
        self._owner = owner
        self._client = client
        self._target = target

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request through the held proxy. Errors are raised."""
        domain = self._target if self._target is not None else target_of(url)
        sent = await self._owner._send_with(self._client, self.leased, method, url, domain, kwargs)
        self.outcome = worse(self.outcome, sent.outcome)
        self.leased.report(self.outcome)
        if sent.error is not None:
            raise sent.error
        assert sent.response is not None
        return sent.response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """Send a GET request (see :meth:`request`)."""
        return await self.request("GET", url, **kwargs)
