"""Real deployments started by the tests: a Redis Cluster and a Sentinel group, on loopback.

* :class:`Cluster` (``pharox_redis.server.LocalCluster``, which the benchmarks use too): 3
  masters with a replica each, created with ``redis-cli --cluster create`` from private
  servers (``cluster-node-timeout`` 1000 ms, so a failover takes a few seconds).
* :class:`SentinelGroup`: a master, a replica and 3 sentinels (``down-after-milliseconds``
  1000), which promote the replica when the master dies.

Both use the server binary the tests use (``redis-server``, or ``valkey-server`` with
``PHAROX_REDIS_SERVER``) and stop every process they started; nothing is flushed.
"""

from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path
from typing import Any, Optional

import redis

from pharox_redis.server import (
    NODE_TIMEOUT_MS,
    REPLICATION,
    LocalCluster,
    RedisServer,
    StartStop,
    free_port,
    redis_server_binary,
    synced,
    wait_until,
)

from .relay import Relay

Cluster = LocalCluster  # the tests' name for it


class SentinelGroup(StartStop):
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
