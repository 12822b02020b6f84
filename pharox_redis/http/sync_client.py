"""``LeasingClient``: each urllib3 request through a leased proxy, released with its outcome.

Sync requests go through urllib3: requests is built on it, and urllib3 alone has what this
needs with less on top: ``ProxyManager``/``SOCKSProxyManager`` with a keep-alive pool per
host, and its own bounded LRU of pools (``PoolManager``), which this client mirrors one
level up, one manager per proxy (:class:`~pharox_redis.http.pools.ClientCache`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional

from pharox import ProxyFilters, SelectorStrategy

from ..leased_proxy import LeasedProxy
from ..manager import RedisProxyManager
from ..outcome import Outcome
from .clients import urllib3_manager
from .endpoint import ProxyEndpoint
from .extras import require
from .leasing import DEFAULT_TIMEOUT, Acquire, LeaseSettings, Release, Send, Sent, Step, tries
from .pools import ClientCache
from .rules import DEFAULT_RULES, OutcomeRules, target_of, worse

if TYPE_CHECKING:
    import urllib3


class LeasingClient:
    """Send each request through a proxy leased from a pool, and release it with its outcome.

    Parameters
    ----------
    manager:
        The :class:`~pharox_redis.RedisProxyManager` to lease from.
    pool_name, consumer_name, duration_seconds, filters, selector, wait, max_tries:
        The leases taken and the proxies a request may try (:class:`LeaseSettings`).
    rules:
        How a response becomes an Outcome (403/429 blocked, by default).
    max_clients:
        Proxies whose urllib3 manager (and its keep-alive connections) is kept, least
        recently used closed first.
    remote_dns:
        SOCKS proxies resolve host names (``socks5h``), the default.
    **pool_kwargs:
        For each urllib3 manager (``maxsize``, ``timeout``, ``headers``, ``cert_reqs``...);
        ``timeout`` defaults to 30 s.

    Examples
    --------
    >>> with LeasingClient(manager, "scrapers", duration_seconds=30) as client:
    ...     response = client.request("GET", "https://example.com/")  # doctest: +SKIP
    ...     with client.session(target="example.com") as session:  # one proxy, many requests
    ...         session.request("GET", "https://example.com/a")  # doctest: +SKIP

    """

    def __init__(
        self,
        manager: RedisProxyManager,
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
        remote_dns: bool = True,
        **pool_kwargs: Any,
    ) -> None:
        self._urllib3 = require("urllib3", "http")
        self.manager = manager
        self.settings = LeaseSettings(
            pool_name, consumer_name, duration_seconds, filters, selector, wait, max_tries, rules
        )
        self.clients: ClientCache[urllib3.PoolManager] = ClientCache(max_clients)
        pool_kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        self._pool_kwargs = pool_kwargs
        self._remote_dns = remote_dns
        self._transport_errors = (self._urllib3.exceptions.HTTPError, OSError)

    # ------------------------------------------------------------------ requests

    def request(
        self, method: str, url: str, *, target: Optional[str] = None, **kwargs: Any
    ) -> urllib3.BaseHTTPResponse:
        """Send a request through a leased proxy; return the response, its body read.

        Parameters
        ----------
        method, url:
            The request.
        target:
            The domain the lease is for (proxies blocked for it are skipped, and a block
            is reported for it); by default the URL's host.
        **kwargs:
            For urllib3's ``request`` (``headers``, ``body``, ``fields``, ``json``,
            ``timeout``...). urllib3 does not retry (``retries=False`` unless given): a
            failed try rotates to another proxy instead. The body is read before the
            release (``preload_content=True`` unless given; a streamed body is read after
            the lease is released, and the latency reported ends at the headers).

        Raises
        ------
        pharox.ProxyUnavailableError
            No proxy of the pool is free (for ``target``).
        LeaseLostError
            The lease was lost before the request could be sent on it.
        urllib3.exceptions.HTTPError
            The last try's transport error (connection refused, timeout, proxy error).

        """
        domain = target if target is not None else target_of(url)
        kwargs.setdefault("retries", False)
        kwargs.setdefault("preload_content", True)
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
                value = self._perform(step, method, url, domain, kwargs)
            except BaseException as exc:
                error = exc

    def get(self, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """Send a GET request (see :meth:`request`)."""
        return self.request("GET", url, **kwargs)

    @contextmanager
    def session(
        self, target: Optional[str] = None, *, keep_alive: bool = False
    ) -> Iterator[LeasedSession]:
        """Hold one proxy for a block of requests; release it with their worst outcome.

        Parameters
        ----------
        target:
            The domain the lease is for; None: any proxy (blocks are then reported for
            each request's host).
        keep_alive:
            Renew the lease while the block runs (``with_proxy(..., keep_alive=True)``),
            for a unit of work longer than ``duration_seconds``.

        Requests in the block do not rotate: a failure raises, and is reported on leaving.
        No proxy free raises ``ProxyUnavailableError``.

        """
        settings = self.settings
        with self.manager.with_proxy(
            settings.pool_name, keep_alive=keep_alive, **settings.acquire_kwargs(target)
        ) as leased:
            if leased is None:
                raise settings.none_free(target)
            key = ProxyEndpoint.of(leased)
            client = self._borrow(key)
            try:
                yield LeasedSession(self, leased, client, target)
            finally:
                self._give_back(key, client)

    def close(self) -> None:
        """Close the kept connection pools (those in use close when given back)."""
        for client in self.clients.clear():
            client.clear()

    def __enter__(self) -> LeasingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _perform(
        self, step: Step, method: str, url: str, domain: str, kwargs: dict[str, Any]
    ) -> Any:
        manager = self.manager
        if isinstance(step, Send):
            return self._send(step.leased, method, url, domain, kwargs)
        if isinstance(step, Acquire):
            return manager.acquire(self.settings.pool_name, **step.kwargs)
        if isinstance(step, Release):
            return manager.release_proxy(step.leased, outcome=step.outcome)
        return manager.rotate(step.leased, **step.kwargs)

    def _borrow(self, key: ProxyEndpoint) -> urllib3.PoolManager:
        client, closing = self.clients.borrow(key, lambda: self._build(key))
        for evicted in closing:
            evicted.clear()
        return client

    def _give_back(self, key: ProxyEndpoint, client: urllib3.PoolManager) -> None:
        for evicted in self.clients.give_back(key, client):
            evicted.clear()

    def _build(self, key: ProxyEndpoint) -> urllib3.PoolManager:
        return urllib3_manager(key, remote_dns=self._remote_dns, **self._pool_kwargs)

    def _send(
        self, leased: LeasedProxy, method: str, url: str, domain: str, kwargs: dict[str, Any]
    ) -> Sent[urllib3.BaseHTTPResponse]:
        key = ProxyEndpoint.of(leased)
        client = self._borrow(key)
        try:
            return self._send_with(client, leased, method, url, domain, kwargs)
        finally:
            self._give_back(key, client)

    def _send_with(
        self,
        client: urllib3.PoolManager,
        leased: LeasedProxy,
        method: str,
        url: str,
        domain: str,
        kwargs: dict[str, Any],
    ) -> Sent[urllib3.BaseHTTPResponse]:
        leased.check()
        started = time.perf_counter()
        try:
            response = client.request(method, url, **kwargs)
        except self._transport_errors as exc:
            return Sent(None, exc, Outcome.failed())
        latency_ms = (time.perf_counter() - started) * 1000.0
        outcome = self.settings.rules.judge(response.status, response, domain, latency_ms)
        return Sent(response, None, outcome)


class LeasedSession:
    """Requests through the one proxy a :meth:`LeasingClient.session` block holds.

    Attributes
    ----------
    leased:
        The lease; each request checks it first and raises LeaseLostError when it is lost.
    outcome:
        The worst outcome so far (reported with the release on leaving the block).

    """

    def __init__(
        self,
        owner: LeasingClient,
        leased: LeasedProxy,
        client: urllib3.PoolManager,
        target: Optional[str],
    ) -> None:
        self.leased = leased
        self.outcome: Optional[Outcome] = None
        self._owner = owner
        self._client = client
        self._target = target

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """Send a request through the held proxy; the body is read. Errors are raised."""
        domain = self._target if self._target is not None else target_of(url)
        kwargs.setdefault("retries", False)
        kwargs.setdefault("preload_content", True)
        sent = self._owner._send_with(self._client, self.leased, method, url, domain, kwargs)
        self.outcome = worse(self.outcome, sent.outcome)
        self.leased.report(self.outcome)
        if sent.error is not None:
            raise sent.error
        assert sent.response is not None
        return sent.response

    def get(self, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """Send a GET request (see :meth:`request`)."""
        return self.request("GET", url, **kwargs)
