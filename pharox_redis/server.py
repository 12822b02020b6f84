"""Start a private ``redis-server`` (or a local cluster of them) for demos, tests, benchmarks.

A :class:`RedisServer` listens on a unix socket in a fresh temporary folder (no TCP port to
race for) or, when asked, on a free loopback port; it keeps nothing on disk unless
``appendonly`` is requested, and it is stopped and its folder removed on exit. A
:class:`LocalCluster` is such servers made into a Redis Cluster with ``redis-cli --cluster
create``, for the tests and the scale-out benchmark.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Optional, TypeVar

import redis

SERVER_VARIABLE = "PHAROX_REDIS_SERVER"
S = TypeVar("S", bound="StartStop")


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


class StartStop:
    """Something started with ``start()`` and ended with ``close()``; also a ``with`` block."""

    def start(self: S) -> S:
        """Start; return self."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop, and remove what was made."""
        raise NotImplementedError

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class RedisServer(StartStop):
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


# ---------------------------------------------------------------------- a local cluster

NODE_TIMEOUT_MS = 1000
# A replica that has never synced cannot take over: sync at once instead of waiting 5 s.
REPLICATION = ("--repl-diskless-sync-delay", "0")


def cluster_port() -> int:
    """Return a free port whose cluster bus port (10,000 higher) is free too."""
    for _ in range(100):
        port = random.randint(20_000, 45_000)
        if all(_free(p) for p in (port, port + 10_000)):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def synced(server: RedisServer) -> bool:
    """Return True for a master, or a replica whose link to its master is up."""
    with redis.Redis(port=server.port, socket_timeout=1, decode_responses=True) as client:
        info: dict[str, Any] = client.info("replication")
        return bool(info["role"] == "master" or info.get("master_link_status") == "up")


class LocalCluster(StartStop):
    """A loopback Redis Cluster: ``masters`` masters with ``replicas`` replicas each."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        extra = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            *REPLICATION,
        )
        self.replicas = replicas
        self.servers = [RedisServer(tcp=True, extra=extra) for _ in range(masters * (1 + replicas))]
        for server in self.servers:  # the cluster bus listens 10,000 ports higher
            server.port = cluster_port()

    @property
    def url(self) -> str:
        """Return the ``redis+cluster://`` URL of every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self) -> LocalCluster:
        """Start the nodes, create the cluster and wait until every node says it is ok."""
        for server in self.servers:
            server.start()
        if len(self.servers) == 1:  # redis-cli makes clusters of 3 masters at least
            with self.client(self.servers[0].port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            wait_until(lambda: self._ok(self.servers[0]), 30, "the cluster to be ok")
            return self
        cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
        if cli is None:
            raise FileNotFoundError("redis-cli is not on PATH")
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        replicas = ("--cluster-replicas", str(self.replicas), "--cluster-yes")
        subprocess.run(
            [cli, "--cluster", "create", *addresses, *replicas],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(lambda: all(self._ok(s) for s in self.servers), 30, "the cluster to be ok")
        wait_until(lambda: all(map(synced, self.servers)), 30, "the replicas to sync")
        return self

    @staticmethod
    def _ok(server: RedisServer) -> bool:
        with redis.Redis(port=server.port, socket_timeout=1) as client:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text

    def client(self, port: int) -> redis.Redis:
        """Return a plain client of one node."""
        return redis.Redis(port=port, socket_timeout=2)

    def master_of(self, key: str) -> RedisServer:
        """Return the server that is master of ``key``'s slot now."""
        with self.client(self.servers[0].port) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    port = int(master[1])
                    return next(s for s in self.servers if s.port == port)
        raise LookupError(key)

    def close(self) -> None:
        """Stop every node and remove their folders."""
        for server in self.servers:
            server.close()
