"""Redis Cluster: executors that send each part of a batch to the node that owns its slot.

Every call says which slot it belongs to (``operations.batch.slot_key``): a pool's calls
carry the pool's hash tag, the registries theirs, and a keyless ``WAIT`` is routed to the
pool it covers. :class:`ClusterExecutor` groups a batch by node and sends each part with the
plain executor's ``send_to`` on that node's connection: still one round trip per node, an
atomic part in one ``MULTI``/``EXEC`` on its node, and the function library (or, without
Functions, each script) loaded on the node that runs it: "Function not found" and NOSCRIPT
are answered per node, as on a single server, so each master loads the library the first
time a call runs there (its replicas get it by replication).

During a failover or a slot migration a node answers ``MOVED``, ``ASK``, ``TRYAGAIN``,
``CLUSTERDOWN`` or ``READONLY``, or cannot be reached. The batch is then sent again after
the client re-reads the slot map (``failover.py``), until ``failover_timeout`` seconds have
passed; every script is idempotent, so a batch sent twice changes nothing twice.
"""

from __future__ import annotations

from typing import Any, Sequence

import redis
from redis.asyncio.cluster import PipelineCommand
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)

from .executor import RAW, AsyncExecutor, Executor
from .failover import Resending, aresend, resend
from .operations.batch import Call, slot_key

# What a node answers, or how it fails, while the cluster changes its mind about a slot.
MOVING = (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
    redis.ConnectionError,
    redis.TimeoutError,
)


def moving(replies: Sequence[Any]) -> None:
    """Raise the first reply that says the slot is elsewhere or in transition."""
    for reply in replies:
        if isinstance(reply, MOVING):
            raise reply


class ClusterExecutor(Resending, Executor):
    """Run operations on a Redis Cluster through a ``redis.cluster.RedisCluster`` client.

    Parameters
    ----------
    client:
        The cluster client; its slot map says which node owns which slot.
    failover_timeout:
        Seconds a batch is sent again while the cluster fails over or moves a slot.

    """

    def send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send each node its part of the calls; resend while the cluster is changing."""
        return resend(
            lambda: self._send_by_node(calls, atomic),
            self.failover_timeout,
            MOVING,
            self.client.nodes_manager.initialize,
        )

    def _send_by_node(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        for node, at in by_node(self.client, calls, atomic):
            part = self.send_to(
                self.client.get_redis_connection(node), [calls[i] for i in at], atomic
            )
            moving(part)
            for i, reply in zip(at, part, strict=True):
                replies[i] = reply
        return replies


class AsyncClusterExecutor(Resending, AsyncExecutor):
    """Run operations on a Redis Cluster through a ``redis.asyncio.cluster.RedisCluster``.

    A node's part of a batch goes out on one of that node's connections as the commands
    of one pipeline (wrapped in ``MULTI``/``EXEC`` when atomic), read back in order.
    """

    async def send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send each node its part of the calls; resend while the cluster is changing."""
        if not self.client.nodes_manager.slots_cache:
            await self.client.initialize()
        return await aresend(
            lambda: self._send_by_node(calls, atomic),
            self.failover_timeout,
            MOVING,
            self.client.nodes_manager.initialize,
        )

    async def _send_by_node(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        for node, at in by_node(self.client, calls, atomic):
            part = await self.send_to(node, [calls[i] for i in at], atomic)
            moving(part)
            for i, reply in zip(at, part, strict=True):
                replies[i] = reply
        return replies

    async def send_to(self, node: Any, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send calls in one round trip on a connection of a cluster node."""
        commands = [self.command(call) for call in calls]
        if atomic:
            commands = [("MULTI",), *commands, ("EXEC",)]
        queued = [PipelineCommand(i, *args, **RAW) for i, args in enumerate(commands)]
        await node.execute_pipeline(queued)
        results = [command.result for command in queued]
        if not atomic:
            return results
        done = results[-1]  # EXEC: the replies, or why the transaction was refused
        if isinstance(done, list):
            return list(done)
        # Refused as a whole (EXECABORT): a command refused when queued says why.
        queued_errors = [r for r in results[1:-1] if isinstance(r, Exception)]
        return [queued_errors[0] if queued_errors else done] * len(calls)


def by_node(cluster: Any, calls: Sequence[Call], atomic: bool) -> list[tuple[Any, list[int]]]:
    """Group calls by the node that owns each one's slot: (node, indexes), in order.

    A call without a key goes to the cluster's default node. An atomic batch must stay on
    one node (the operations keep it in one slot).
    """
    groups: dict[str, tuple[Any, list[int]]] = {}
    default = None
    for i, call in enumerate(calls):
        key = slot_key(call)
        if key is None:
            default = default or cluster.get_default_node()
            node = default
        else:
            node = cluster.get_node_from_key(key)
        groups.setdefault(node.name, (node, []))[1].append(i)
    if atomic and len(groups) > 1:
        raise ValueError("an atomic batch must stay in one slot")
    return list(groups.values())
