"""Real deployments started by the tests: a Redis Cluster and a Sentinel group, on loopback.

* :class:`Cluster`: 3 masters with a replica each, created with ``redis-cli --cluster
  create`` from private servers (``cluster-node-timeout`` 1000 ms, so a failover takes a
  few seconds).
* :class:`SentinelGroup`: a master, a replica and 3 sentinels (``down-after-milliseconds``
  1000), which promote the replica when the master dies.

Both use the server binary the tests use (``redis-server``, or ``valkey-server`` with
``PHAROX_REDIS_SERVER``) and stop every process they started; nothing is flushed.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

import redis

from pharox_redis.server import RedisServer, free_port, redis_server_binary

from .relay import Relay

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


class Cluster:
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

    def start(self) -> Cluster:
        """Start the nodes, create the cluster and wait until every node says it is ok."""
        for server in self.servers:
            server.start()
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

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def synced(server: RedisServer) -> bool:
    """Return True for a master, or a replica whose link to its master is up."""
    with redis.Redis(port=server.port, socket_timeout=1, decode_responses=True) as client:
        info: dict[str, Any] = client.info("replication")
        return bool(info["role"] == "master" or info.get("master_link_status") == "up")


class SentinelGroup:
    """A master, its replicas and 3 sentinels watching them, all on loopback.

    Parameters
    ----------
    replicas:
        How many replicas the master has.
    lagging:
        Replicate the first replica through a :class:`~tests.helpers.relay.Relay`, which
        :meth:`lag` stalls: what the master writes from then on never reaches that replica.

    """

    SERVICE = "pharox"

    def __init__(self, replicas: int = 1, lagging: bool = False, sentinels: int = 3) -> None:
        self.master = RedisServer(tcp=True)
        self.replicas = [RedisServer(tcp=True) for _ in range(replicas)]
        self.lagging = lagging
        self.relay: Optional[Relay] = None
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """Return (host, port) of each sentinel."""
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def url(self) -> str:
        """Return the ``redis+sentinel://`` URL of the group's master."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self) -> SentinelGroup:
        """Start master, replicas and sentinels; wait until the sentinels see the replicas."""
        self.master.extra = REPLICATION
        self.master.start()
        for n, replica in enumerate(self.replicas):
            port = self.master.port
            if n == 0 and self.lagging:
                self.relay = Relay("127.0.0.1", port).start()
                port = self.relay.port
            replica.extra = ("--replicaof", "127.0.0.1", str(port), *REPLICATION)
            replica.start()
            wait_until(partial(synced, replica), 30, "a replica to sync")
        binary = redis_server_binary()
        assert binary is not None
        for port in self.sentinel_ports:
            folder = Path(self.master.dir) / f"sentinel-{port}"
            folder.mkdir()
            config = folder / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [binary, str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        wait_until(self._watching, 30, "the sentinels to see the replicas")
        return self

    def lag(self) -> None:
        """From now on, nothing the master writes reaches the first replica."""
        assert self.relay is not None, "a SentinelGroup(lagging=True) lags"
        self.relay.stall()

    def _watching(self) -> bool:
        for port in self.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as sentinel:
                seen: list[Any] = sentinel.sentinel_slaves(self.SERVICE)
                up = [r for r in seen if "s_down" not in str(r.get("flags", ""))]
                if len(up) < len(self.replicas):
                    return False
        return True

    def master_port(self) -> int:
        """Return the port of the master the sentinels name now."""
        port = self.sentinel_ports[0]
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as sentinel:
            return int(sentinel.sentinel_get_master_addr_by_name(self.SERVICE)[1])

    def close(self) -> None:
        """Stop the sentinels, the relay and every server."""
        for process in self.sentinels:
            process.kill()
            process.wait(10)
        if self.relay is not None:
            self.relay.close()
        for replica in self.replicas:
            replica.close()
        self.master.close()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
