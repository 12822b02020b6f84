"""Start a private ``redis-server`` for demos, tests and benchmarks.

The server listens on a unix socket in a fresh temporary folder (no TCP port to race for)
or, when asked, on a free loopback port; it keeps nothing on disk unless ``appendonly`` is
requested, and it is stopped and its folder removed on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Optional

SERVER_VARIABLE = "PHAROX_REDIS_SERVER"


def redis_server_binary() -> Optional[str]:
    """Return the server binary to start: ``$PHAROX_REDIS_SERVER``, or ``redis-server``.

    ``PHAROX_REDIS_SERVER=valkey-server`` (a name on PATH or a path) runs the demo, the
    tests and the benchmarks on Valkey. None when the binary is not found.
    """
    return shutil.which(os.environ.get(SERVER_VARIABLE) or "redis-server")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` process of our own.

    Parameters
    ----------
    tcp:
        Listen on a free 127.0.0.1 port instead of a unix socket.
    appendonly:
        Turn on AOF persistence (``appendfsync always``) so a restart keeps the data.
    extra:
        More ``--option value`` arguments for the server.
    binary:
        The server binary (default :func:`redis_server_binary`), e.g. a ``valkey-server``.

    """

    def __init__(
        self,
        *,
        tcp: bool = False,
        appendonly: bool = False,
        extra: tuple[str, ...] = (),
        binary: Optional[str] = None,
    ) -> None:
        binary = binary or redis_server_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="pharox-redis-"))
        self.port = free_port() if tcp else 0
        self.socket = self.dir / "redis.sock"
        self.appendonly = appendonly
        self.extra = extra
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """Return the URL clients connect to."""
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket}"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.dir / "redis.log"),
            *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited:\n{log[-2000:]}")
            try:
                with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                    if client.ping():
                        return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with ``kill``); the data folder stays for a restart."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same address and data folder."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
