"""Executors: run the batches the sans-I/O operations yield, on a redis-py client.

An operation (``operations/``) yields :class:`~pharox_redis.operations.batch.Batch` es; an
executor sends each as one round trip and sends the replies back in. :class:`Executor` does
it with a sync client, :class:`AsyncExecutor` with a ``redis.asyncio`` one; everything else is
in :class:`BatchPlan`, which they share, so ``await`` is the only difference between them.

What a batch becomes on the wire:

* a single call as one command, a longer (or atomic) batch as one pipeline (``MULTI``/``EXEC``
  when atomic), read with ``raise_on_error=False``; scripts go out as ``EVALSHA``;
* when Redis answers NOSCRIPT (after a restart, a failover or ``SCRIPT FLUSH``), the batch is
  sent again with each script loaded inside one transaction with its call
  (``MULTI; SCRIPT LOAD; EVALSHA; EXEC``), so no flush can slip in between; that is safe
  because every script is idempotent;
* replies are read as bytes (``NEVER_DECODE``), whatever the client's ``decode_responses``;
* a Redis error becomes :class:`~pharox_redis.errors.RedisStorageError`, a Lua error naming
  the file and line of ``lua/`` it came from.

Extension point. A deployment that routes commands (Redis Cluster) or reconnects (Sentinel)
subclasses an executor and overrides :meth:`Executor.send` (one round trip of
:class:`Wire` commands; each carries a key of the slot it belongs to, so a cluster executor
can group them by node) and, where ``MULTI`` cannot carry ``SCRIPT LOAD`` to the right node,
:meth:`BatchPlan.reload_plan`. Observers (``executor.observers``) see every batch before it
is sent: the public hook for counting round trips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar

from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError, RedisError, ResponseError

from .errors import RedisStorageError
from .operations.batch import Batch, Call, Op, ScriptCall
from .scripts import ScriptSource, sources

T = TypeVar("T")
RAW = {NEVER_DECODE: True}


@dataclass(frozen=True, slots=True)
class Wire:
    """One command as sent: its arguments and a key of the slot it must run in (None: any)."""

    args: tuple[Any, ...]
    key: Optional[str] = None


class BatchPlan:
    """What both executors do besides I/O: turning batches into commands and replies back.

    Parameters
    ----------
    client:
        The redis-py client (sync or asyncio) the executor sends through.

    """

    def __init__(self, client: Any) -> None:
        self.client: Any = client
        self.scripts: dict[str, ScriptSource] = sources()
        self.observers: list[Callable[[Batch], None]] = []

    def wire(self, call: Call) -> Wire:
        """Return the command a call sends (``EVALSHA`` for a script)."""
        if isinstance(call, ScriptCall):
            sha = self.scripts[call.name].sha
            return Wire(("EVALSHA", sha, len(call.keys), *call.keys, *call.args), call.keys[0])
        return Wire(tuple(call.args), call.route)

    def outgoing(self, batch: Batch) -> list[Wire]:
        """Return the commands of a batch about to be sent; the observers see it first."""
        for observer in self.observers:
            observer(batch)
        return [self.wire(call) for call in batch.calls]

    def reload_plan(self, batch: Batch) -> tuple[list[Wire], list[tuple[int, bool]]]:
        """Return a batch that met NOSCRIPT as commands that load each script with its call.

        Each script call goes as MULTI, SCRIPT LOAD, EVALSHA, EXEC: one transaction on the
        call's own keys (one slot, as before). An atomic batch is one transaction already:
        its scripts are loaded first inside it. Also returns where each call's reply is:
        (index among the replies, True when inside an EXEC's replies).
        """
        wires: list[Wire] = []
        where: list[tuple[int, bool]] = []
        if batch.atomic:
            names = dict.fromkeys(c.name for c in batch.calls if isinstance(c, ScriptCall))
            wires += [Wire(("SCRIPT", "LOAD", self.scripts[name].text)) for name in names]
            for call in batch.calls:
                where.append((len(wires), False))
                wires.append(self.wire(call))
            return wires, where
        for call in batch.calls:
            wire = self.wire(call)
            if isinstance(call, ScriptCall):
                load = Wire(("SCRIPT", "LOAD", self.scripts[call.name].text), wire.key)
                wires += [Wire(("MULTI",), wire.key), load, wire, Wire(("EXEC",), wire.key)]
                where.append((len(wires) - 1, True))
            else:
                where.append((len(wires), False))
                wires.append(wire)
        return wires, where

    @staticmethod
    def replies_at(where: Sequence[tuple[int, bool]], raw: Sequence[Any]) -> list[Any]:
        """Return the replies of a :meth:`reload_plan`, one per call of the batch."""
        out = []
        for index, inside in where:
            reply = raw[index]
            if inside and isinstance(reply, list):
                reply = reply[1]  # EXEC's replies: SCRIPT LOAD's, then the script's
            out.append(reply)
        return out

    @staticmethod
    def scripts_lost(batch: Batch, replies: Sequence[Any]) -> bool:
        """Return True when the replies say Redis does not know one of the batch's scripts."""
        return any(
            isinstance(call, ScriptCall) and isinstance(reply, NoScriptError)
            for call, reply in zip(batch.calls, replies, strict=True)
        )

    def checked(self, batch: Batch, replies: Sequence[Any]) -> list[Any]:
        """Return a batch's replies, raising the first error among them.

        A script's error names the file and line of ``lua/`` it came from.
        """
        for call, reply in zip(batch.calls, replies, strict=True):
            if isinstance(reply, RedisError):
                if isinstance(call, ScriptCall) and isinstance(reply, ResponseError):
                    raise type(reply)(self.scripts[call.name].explain(str(reply)))
                raise reply
        return list(replies)

    @staticmethod
    def storage_error(exc: RedisError) -> RedisStorageError:
        """Wrap a redis-py error in the pharox hierarchy."""
        return RedisStorageError(f"Redis {type(exc).__name__}: {exc}")


class Executor(BatchPlan):
    """Run operations with a sync redis-py client (``redis.Redis``)."""

    def run(self, op: Op[T]) -> T:
        """Drive an operation to its result, one round trip per batch."""
        try:
            batch = next(op)
            while True:
                batch = op.send(self.execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def execute(self, batch: Batch) -> list[Any]:
        """Send one batch (one round trip, two after NOSCRIPT) and return its replies."""
        try:
            replies = self.send(self.outgoing(batch), batch.atomic)
            if self.scripts_lost(batch, replies):
                wires, where = self.reload_plan(batch)
                replies = self.replies_at(where, self.send(wires, batch.atomic))
            return self.checked(batch, replies)
        except RedisError as exc:
            raise self.storage_error(exc) from exc

    def send(self, wires: Sequence[Wire], atomic: bool) -> list[Any]:
        """Send commands in one round trip; a command's error comes back as its reply."""
        if len(wires) == 1 and not atomic:
            try:
                return [self.client.execute_command(*wires[0].args, **RAW)]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=atomic)
        for wire in wires:
            pipe.execute_command(*wire.args, **RAW)
        return list(pipe.execute(raise_on_error=False))


class AsyncExecutor(BatchPlan):
    """Run operations with an asyncio redis-py client (``redis.asyncio.Redis``)."""

    async def run(self, op: Op[T]) -> T:
        """Drive an operation to its result, one round trip per batch."""
        try:
            batch = next(op)
            while True:
                batch = op.send(await self.execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def execute(self, batch: Batch) -> list[Any]:
        """Send one batch (one round trip, two after NOSCRIPT) and return its replies."""
        try:
            replies = await self.send(self.outgoing(batch), batch.atomic)
            if self.scripts_lost(batch, replies):
                wires, where = self.reload_plan(batch)
                replies = self.replies_at(where, await self.send(wires, batch.atomic))
            return self.checked(batch, replies)
        except RedisError as exc:
            raise self.storage_error(exc) from exc

    async def send(self, wires: Sequence[Wire], atomic: bool) -> list[Any]:
        """Send commands in one round trip; a command's error comes back as its reply."""
        if len(wires) == 1 and not atomic:
            try:
                return [await self.client.execute_command(*wires[0].args, **RAW)]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=atomic)
        for wire in wires:
            pipe.execute_command(*wire.args, **RAW)
        return list(await pipe.execute(raise_on_error=False))
