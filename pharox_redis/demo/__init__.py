"""A short tour of pharox-redis: ``python -m pharox_redis [--url URL | --fakeredis]``.

The backend is chosen in this order:

1. ``--url`` or the ``REDIS_URL`` environment variable: an existing server. The demo then
   writes under a unique key prefix and deletes everything it wrote at the end; it never
   flushes anything.
2. A private ``redis-server`` (:class:`~pharox_redis.server.RedisServer`) when the binary is
   on ``PATH``; it listens on a unix socket and is removed on exit.
3. ``fakeredis`` (an in-process fake, for demos and tests only).

The demo builds a pool of twelve proxies and leases from it with ``RedisProxyManager`` (one
round trip per acquire): with every selector, with flat and nested filters and with a Python
predicate, through ``with_proxy`` with a keep-alive and an acquire callback. It then hammers
the pool from a few threads, first with pharox's stock ``ProxyManager`` and then with
``RedisProxyManager``, sends one HTTP request through a leased proxy (a local forward
proxy with a login, in process), prints the final pool counters and audits the pool.

Modules
-------
command
    The command line: options, where the URL comes from, the order of the steps, exit code.
backend
    Choosing, opening and closing the Redis the demo talks to; cleaning a shared server.
pool
    The demo pool: its twelve proxies, health checks, counters line and final audit.
tour
    The guided tour: selectors, filters, a predicate, ``with_proxy``, keep-alive, callbacks.
stress
    Threads leasing with pharox's stock ``ProxyManager``, then with ``RedisProxyManager``.
request
    One HTTP request through a leased proxy (local origin and forward proxy, in process).
"""

from __future__ import annotations

from .command import main

__all__ = ["main"]
