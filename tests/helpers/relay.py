"""A tiny threaded TCP relay for fault injection between a Redis client and its server.

It listens on a free 127.0.0.1 port and forwards bytes both ways, one pair of threads per
client connection. Four switches:

* :meth:`Relay.cut_next_reply` drops the next chunk the server sends back and closes that
  connection on both sides: the server has run the command, the client never hears of it.
* :meth:`Relay.cut_replies_to` does the same to the reply of each of the next requests that
  carry a marker (a function's name, so the reply of one script's FCALL), whatever the
  client sends in between, a new connection's handshake included.
* :meth:`Relay.stall` swallows everything from then on: connections are accepted and
  nothing is answered, so clients run into their socket timeout.
* :meth:`Relay.close` stops listening and closes every connection: the port refuses.
"""

from __future__ import annotations

import socket
import threading
from typing import Optional

from pharox_redis.server import StartStop

CHUNK = 65536


class _Pair:
    """A client connection and its upstream connection, closed together exactly once."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._closed = False
        self.cut_pending = False  # drop the next reply: it answers a marked request

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump's recv
            except OSError:
                pass
            sock.close()


class Relay(StartStop):
    """Forward 127.0.0.1:<free port> to ``upstream_host:upstream_port``.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener: Optional[socket.socket] = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._cut_armed = False
        self._markers: list[tuple[bytes, int]] = []  # (marker, requests left to cut)
        self._stalled = False
        self._closing = threading.Event()
        self._pairs: list[_Pair] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0  # client connections accepted so far
        self.cuts = 0  # replies dropped so far

    @property
    def url(self) -> str:
        """Return the URL a redis-py client connects to."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Relay:
        """Start accepting connections."""
        thread = threading.Thread(target=self._accept_loop, name="relay accept", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def cut_next_reply(self) -> None:
        """Drop the next chunk the server sends back and close that connection."""
        with self._lock:
            self._cut_armed = True

    def cut_replies_to(self, marker: bytes, times: int = 1) -> None:
        """Drop the replies to the next ``times`` requests carrying ``marker``, as above."""
        with self._lock:
            self._markers.append((marker, times))

    def stall(self) -> None:
        """From now on forward nothing in either direction (clients time out)."""
        with self._lock:
            self._stalled = True

    def close(self) -> None:
        """Stop listening, close every connection and wait for the threads."""
        self._closing.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once
            except OSError:
                pass
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # ------------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._closing.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                if self._closing.is_set():
                    pair.close()
                    return
                self.connections += 1
                self._pairs.append(pair)
                for src, dst, replies in ((client, upstream, False), (upstream, client, True)):
                    thread = threading.Thread(
                        target=self._pump, args=(pair, src, dst, replies), daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
        # Stop listening at once, so the port refuses from here on.
        listener.close()

    def _mark(self, pair: _Pair, request: bytes) -> None:
        """Arm ``pair`` to drop its next reply when ``request`` carries an armed marker."""
        for i, (marker, left) in enumerate(self._markers):
            if marker in request:
                pair.cut_pending = True
                if left > 1:
                    self._markers[i] = (marker, left - 1)
                else:
                    del self._markers[i]
                return

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    return
                with self._lock:
                    stalled = self._stalled
                    if not replies and not stalled:
                        self._mark(pair, data)
                    cut = replies and (self._cut_armed or pair.cut_pending) and not stalled
                    if cut:
                        if pair.cut_pending:
                            pair.cut_pending = False
                        else:
                            self._cut_armed = False
                        self.cuts += 1
                if cut:
                    return  # drop the reply; the finally closes both sides
                if not stalled:
                    dst.sendall(data)
        except OSError:
            return
        finally:
            pair.close()
