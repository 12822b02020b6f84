"""Real proxy servers and an origin server on loopback, for the HTTP client tests.

Each proxy is a ``pproxy`` process (HTTP and SOCKS5 on one port, with or without a
login) listening on an address of its own, 127.0.0.X, and connecting out *from* that
address (pproxy's ``@<bind>`` option). The origin server, a threaded ``http.server`` in the
test process, sees the proxy's outgoing connection: its source address says which proxy
carried each request, whatever client sent it. pproxy runs with ``--auth 0``: by default it
remembers an address that logged in once and lets it in without credentials for 30 days,
which would hide a client that sends no login.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from pharox import Proxy, ProxyCredentials, ProxyProtocol, ProxyStatus

STARTUP_SECONDS = 10.0


def free_port(host: str) -> int:
    """Return a TCP port nothing listens on at ``host`` (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pproxy_available() -> bool:
    """Return True when the ``pproxy`` package can be run."""
    try:
        import pproxy  # noqa: F401
    except ImportError:
        return False
    return shutil.which(sys.executable) is not None


@dataclass
class ProxyServer:
    """A pproxy process speaking HTTP and SOCKS5 on ``host:port``, from ``host``.

    ``user``/``password``: the login it requires (None: none).
    """

    host: str
    user: Optional[str] = None
    password: Optional[str] = None
    port: int = 0
    process: Optional[subprocess.Popen[bytes]] = field(default=None, repr=False)

    def start(self, port: Optional[int] = None) -> ProxyServer:
        self.port = port or free_port(self.host)
        login = f"#{self.user}:{self.password}" if self.user is not None else ""
        listen = f"http+socks4+socks5://{self.host}:{self.port}/@{self.host}{login}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pproxy", "-l", listen, "--auth", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pproxy did not start on {self.host}:{self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def proxy(
        self, pool_id: UUID, protocol: ProxyProtocol = ProxyProtocol.HTTP, **fields: Any
    ) -> Proxy:
        """Return the pharox Proxy of this server, in pool ``pool_id``."""
        credentials = (
            ProxyCredentials(user=self.user, password=self.password or "")
            if self.user is not None
            else None
        )
        fields.setdefault("status", ProxyStatus.ACTIVE)
        return Proxy(
            host=self.host,
            port=self.port,
            protocol=protocol,
            pool_id=pool_id,
            credentials=credentials,
            **fields,
        )


class Origin:
    """The target site: records which proxy (source address) carried each request.

    ``GET /any?ms=N`` answers 200 after N milliseconds, with the source address and Host in
    the body. A (source, host) pair in ``banned`` gets 403, as a site that bans an address.
    While a request is inside the handler it counts as in flight for its source; ``peak``
    keeps the most seen at once per source.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (source address, Host without port)
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.banned: set[tuple[str, str]] = set()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                source = self.client_address[0]
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                query = parse_qs(urlsplit(self.path).query)
                delay = float(query.get("ms", ["0"])[0]) / 1000.0
                with origin.lock:
                    origin.seen.append((source, host))
                    origin.in_flight[source] += 1
                    origin.peak[source] = max(origin.peak[source], origin.in_flight[source])
                    status = 403 if (source, host) in origin.banned else 200
                try:
                    if delay:
                        time.sleep(delay)
                    body = f"{source} {host}".encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with origin.lock:
                        origin.in_flight[source] -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, host: str = "127.0.0.1", path: str = "/", ms: int = 0) -> str:
        return f"http://{host}:{self.port}{path}" + (f"?ms={ms}" if ms else "")

    def sources(self, host: Optional[str] = None) -> list[str]:
        """Return the source address of each request seen (for ``host`` only, if given)."""
        with self.lock:
            return [s for s, h in self.seen if host is None or h == host]

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.in_flight.clear()
            self.peak.clear()
            self.banned.clear()

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
