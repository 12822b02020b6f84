"""One HTTP request through a leased proxy: a local origin and a local forward proxy.

Both run in this process on 127.0.0.1 (the standard library's ``http.server``): the proxy
asks for a login (a user name with a space, a password with ``@``), forwards plain HTTP
and adds a ``Via`` header the origin echoes, so the answer shows it went through the proxy.
The request is sent with httpx (a dependency of pharox) built by
:func:`pharox_redis.http.httpx_proxy`, and the lease is released with ``Outcome.ok``.
When the servers cannot start, the step says so and the demo goes on.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from pharox import Proxy, ProxyCredentials, ProxyPool, ProxyProtocol, ProxyStatus

from ..http import ProxyEndpoint, httpx_proxy
from ..manager import RedisProxyManager
from ..outcome import Outcome
from ..storage import RedisStorage

POOL_NAME = "demo-http"
LOGIN = ("demo user", "p@ss word")
VIA = "1.1 pharox-demo-proxy"


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello via {self.headers.get('Via', 'nothing')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ForwardProxy(BaseHTTPRequestHandler):
    expected = ProxyEndpoint("http", "127.0.0.1", 0, *LOGIN).basic_auth()

    def do_GET(self) -> None:
        if self.headers.get("Proxy-Authorization") != self.expected:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="demo"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = urlsplit(self.path)  # a proxy gets the absolute URL
        upstream = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=5)
        try:
            upstream.request("GET", target.path or "/", headers={"Via": VIA})
            answer = upstream.getresponse()
            body = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def send_request(storage: RedisStorage, say: Callable[[str], None]) -> None:
    """Lease the local proxy from a pool of its own, send one GET through it, release it.

    Parameters
    ----------
    storage:
        The demo's storage.
    say:
        Where output lines go.

    """
    try:
        with _serving(_Origin) as origin_port, _serving(_ForwardProxy) as proxy_port:
            _through_a_lease(storage, say, origin_port, proxy_port)
    except OSError as exc:
        say(f"request through a leased proxy: skipped, no local servers ({exc})")


def _through_a_lease(
    storage: RedisStorage, say: Callable[[str], None], origin_port: int, proxy_port: int
) -> None:
    import httpx  # pharox's own dependency

    pool = ProxyPool(name=POOL_NAME)
    storage.save_pool(pool)
    user, password = LOGIN
    proxy = Proxy(
        host="127.0.0.1",
        port=proxy_port,
        protocol=ProxyProtocol.HTTP,
        pool_id=pool.id,
        status=ProxyStatus.ACTIVE,
        credentials=ProxyCredentials(user=user, password=password),
    )
    storage.add_proxies_bulk([proxy])
    manager = RedisProxyManager(storage)
    url = f"http://127.0.0.1:{origin_port}/"
    with manager.with_proxy(POOL_NAME, duration_seconds=30, target="127.0.0.1") as leased:
        if leased is None:
            say("request through a leased proxy: no proxy free")
            return
        with httpx.Client(proxy=httpx_proxy(leased), trust_env=False, timeout=5) as client:
            started = time.perf_counter()
            response = client.get(url)
            latency_ms = (time.perf_counter() - started) * 1000
        leased.report(Outcome.ok(latency_ms))
    say(
        f"request via a leased proxy (login {user!r}/{password!r}): GET {url} -> "
        f"{response.status_code} {response.text!r} in {latency_ms:.0f} ms, released ok"
    )
    for stored in storage.list_pools():
        if stored.name == POOL_NAME:
            storage.delete_pool(str(stored.id))
