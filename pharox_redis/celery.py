"""Celery: one storage and manager per worker process, and proxies held for a whole task.

A Redis client must not cross a ``fork``: its connections would be shared by the parent
and every child. :class:`WorkerProxies` builds the manager in each prefork child when it
starts (Celery's ``worker_process_init`` signal) and, anywhere else (the parent, a solo or
threads pool, a test), lazily on first use; a process that finds a manager built by
another process (after a fork) builds its own. :meth:`WorkerProxies.hold` leases a proxy
for the block and renews the lease in a background thread (``with_proxy(...,
keep_alive=True)``), so a task of unknown length keeps its proxy, and learns at once when
it lost it (``leased.check()``).

Needs Celery (``pip install "pharox-redis[celery]"``).

Examples
--------
>>> proxies = WorkerProxies(lambda: RedisProxyManager(RedisStorage.from_url(REDIS_URL)))
>>> proxies.connect()  # in the module that defines the Celery app  # doctest: +SKIP
>>> @app.task  # doctest: +SKIP
... def scrape(url):
...     with proxies.hold("scrapers", duration_seconds=60) as leased:
...         leased.check()
...         return requests.get(url, proxies=requests_proxies(leased)).status_code

"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional

from pharox import ProxyFilters, ProxyUnavailableError, RetryConfig, SelectorStrategy

from .http.extras import require
from .leased_proxy import LeasedProxy
from .manager import RedisProxyManager

_signals = require("celery.signals", "celery")


class WorkerProxies:
    """The manager of this worker process, built once per process, and proxies held for tasks.

    Parameters
    ----------
    factory:
        Builds the manager (and its storage and Redis client): called once in each
        process that uses it.

    Attributes
    ----------
    built:
        How many managers this object built in this process (1 after the first use).
    built_at_init:
        True when this process's manager was built by ``worker_process_init``.

    """

    def __init__(self, factory: Callable[[], RedisProxyManager]) -> None:
        self._factory = factory
        self._manager: Optional[RedisProxyManager] = None
        self._pid = 0
        self._lock = threading.Lock()
        self.built = 0
        self.built_at_init = False

    def connect(self) -> WorkerProxies:
        """Build the manager in each worker process as it starts, close it as it stops.

        Connects to Celery's ``worker_process_init`` and ``worker_process_shutdown``
        signals (call it where the tasks are defined, so the worker imports it).
        """
        _signals.worker_process_init.connect(self._on_process_init, weak=False)
        _signals.worker_process_shutdown.connect(self._on_process_shutdown, weak=False)
        return self

    @property
    def manager(self) -> RedisProxyManager:
        """Return this process's manager, built now if this process has none yet."""
        with self._lock:
            if self._manager is None or self._pid != os.getpid():
                self._manager = None  # built before a fork: the parent's, never closed here
                self.built = 0
                self._manager = self._factory()
                self._pid = os.getpid()
                self.built += 1
            return self._manager

    @contextmanager
    def hold(
        self,
        pool_name: str,
        consumer_name: Optional[str] = None,
        duration_seconds: float = 60.0,
        filters: Optional[ProxyFilters] = None,
        selector: Optional[SelectorStrategy] = None,
        *,
        target: Optional[str] = None,
        retry_config: Optional[RetryConfig] = None,
    ) -> Iterator[LeasedProxy]:
        """Hold a proxy for the block, renewing its lease every third of ``duration_seconds``.

        Parameters
        ----------
        pool_name, consumer_name, duration_seconds, filters, selector, target:
            As for ``with_proxy``. ``duration_seconds`` is how long the proxy stays leased
            after the worker dies (nothing renews it then), not how long the task may run.
        retry_config:
            Wait and try again while no proxy is free (pharox's backoff).

        Raises
        ------
        pharox.ProxyUnavailableError
            No proxy was free (after the retries).
        LeaseLostError
            On leaving, when the lease was lost while held (``leased.check()`` raises it
            inside the block as soon as that is known).

        """
        with self.manager.with_proxy(
            pool_name,
            consumer_name,
            duration_seconds,
            filters,
            selector,
            keep_alive=True,
            retry_config=retry_config,
            target=target,
        ) as leased:
            if leased is None:
                raise ProxyUnavailableError(f"no proxy of pool {pool_name!r} is free")
            yield leased

    def close(self) -> None:
        """Close this process's manager's Redis connections (a later use builds another)."""
        with self._lock:
            manager, self._manager = self._manager, None
            if manager is not None and self._pid == os.getpid():
                manager.storage.client.close()

    def _on_process_init(self, **_: Any) -> None:
        self.manager  # noqa: B018 - built now, in the child, after the fork
        self.built_at_init = True

    def _on_process_shutdown(self, **_: Any) -> None:
        self.close()
