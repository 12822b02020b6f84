"""Executors: run the batches the sans-I/O operations yield, on a redis-py client.

An operation (``operations/``) yields :class:`~pharox_redis.operations.batch.Batch` es; an
executor sends each as one round trip and sends the replies back in. :class:`Executor` does
it with a sync client, :class:`AsyncExecutor` with a ``redis.asyncio`` one; everything else is
in :class:`BatchPlan`, which they share, so ``await`` is the only difference between them.

What a batch becomes on the wire:

* a single call as one command, a longer (or atomic) batch as one pipeline (``MULTI``/``EXEC``
  when atomic), read with ``raise_on_error=False``;
* scripts go out as ``FCALL`` of the functions of one library (``scripts.library()``: the
  shared Lua prelude is defined once per load, not on every call); on a server without
  Functions (Redis < 7), or when the user's ACL refuses ``FCALL`` or ``FUNCTION LOAD``, the
  executor falls back, for good, to ``EVALSHA`` of each script (``scripts.sources()``) and
  sends the batch again;
* when Redis does not know a script (NOSCRIPT, or "Function not found": after a restart, a
  failover to an empty server, ``SCRIPT FLUSH`` or ``FUNCTION FLUSH``), the batch is sent
  again with the script (or the library) loaded inside one transaction with each call
  (``MULTI; FUNCTION LOAD; FCALL; EXEC`` or ``MULTI; SCRIPT LOAD; EVALSHA; EXEC``), so no
  flush can slip in between; when another client loaded the library first, ``FUNCTION
  LOAD`` answers that it exists and the call runs all the same. That is safe because every
  script is idempotent;
* a batch of script calls only (acquire, release, renew, rotate: the hot calls) goes the
  lean way of ``wire.py`` instead: packed with its head cached, on a connection the executor
  keeps;
* replies are read as bytes (``NEVER_DECODE``), whatever the client's ``decode_responses``;
* a Redis error becomes :class:`~pharox_redis.errors.RedisStorageError`, a Lua error naming
  the file and line of ``lua/`` it came from.

Extension point. A deployment that routes commands subclasses an executor and overrides
:meth:`Executor.send` (one round trip of calls) and :meth:`Executor.scan`: every call says
which slot it belongs to (:func:`~pharox_redis.operations.batch.slot_key`), so the cluster
executors (``cluster.py``) group a batch by node and send each part with :meth:`send_to`,
still one round trip per node. Sentinel needs no executor of its own: its client reconnects
to the new master by itself. Observers (``executor.observers``) see every batch before it is
sent: the public hook for counting round trips.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Sequence, TypeVar

from redis.client import NEVER_DECODE
from redis.exceptions import NoPermissionError, NoScriptError, RedisError, ResponseError

from .errors import RedisStorageError
from .operations.batch import Batch, Call, Command, Op, Scan, ScriptCall
from .scripts import Library, ScriptSource, library, sources
from .wire import AsyncHeldConnection, HeldConnection, Packer, script_calls_only, usable

T = TypeVar("T")
RAW = {NEVER_DECODE: True}
FUNCTION_LOST = "Function not found"  # FCALL of a function the server does not hold
LIBRARY_EXISTS = "already exists"  # FUNCTION LOAD of a library the server holds
# FCALL or FUNCTION named as the command an error is about ('fcall', `FCALL`, 'function|load').
_FUNCTION_COMMAND = re.compile(r"[`']f(?:call|unction)[`'|]", re.IGNORECASE)


def refuses_functions(error: BaseException) -> bool:
    """Return True when an error says Functions cannot be used here.

    The server does not know ``FCALL`` or ``FUNCTION`` (Redis < 7; a command renamed away),
    or the user's ACL refuses one of them.
    """
    if not isinstance(error, ResponseError) or not _FUNCTION_COMMAND.search(str(error)):
        return False
    return isinstance(error, NoPermissionError) or "unknown command" in str(error).lower()


def function_lost(error: BaseException) -> bool:
    """Return True when an error is an ``FCALL`` of a function the server does not hold."""
    return isinstance(error, ResponseError) and str(error).startswith(FUNCTION_LOST)


class FallBack(Exception):
    """Internal: the batch must be sent again without Functions."""


_HELD_LIMIT = 64  # clients with a held connection (a cluster's nodes, after failovers)


class BatchPlan:
    """What both executors do besides I/O: turning batches into commands and replies back.

    Parameters
    ----------
    client:
        The redis-py client (sync or asyncio) the executor sends through.
    functions:
        Call the scripts as Redis Functions where the server has them (default); False
        sends ``EVALSHA`` only. ``library`` is None once the executor has fallen back.

    """

    def __init__(self, client: Any, functions: bool = True) -> None:
        self.client: Any = client
        self.scripts: dict[str, ScriptSource] = sources()
        self.shas = {name: source.sha for name, source in self.scripts.items()}
        self.library: Library | None = library() if functions else None
        self.observers: list[Callable[[Batch], None]] = []
        self.packer = Packer(self.head)
        self.held: dict[int, Any] = {}  # id(client) -> (client, its held connection or None)

    def head(self, call: ScriptCall) -> tuple[Any, ...]:
        """Return what a script call sends before its ARGV: command, script and KEYS.

        The one place that says how a script is called; :meth:`command` and the packed
        form of ``wire.py`` are both built from it.
        """
        lib = self.library  # read once: another thread may fall back meanwhile
        if lib is not None:
            return ("FCALL", lib.functions[call.name], len(call.keys), *call.keys)
        return ("EVALSHA", self.shas[call.name], len(call.keys), *call.keys)

    def command(self, call: Call) -> tuple[Any, ...]:
        """Return the command a call sends (``FCALL``, or ``EVALSHA``, for a script)."""
        if isinstance(call, ScriptCall):
            return (*self.head(call), *call.args)
        if isinstance(call, Scan):
            raise ValueError("a Scan is sent in a batch of its own")
        return tuple(call.args)

    def packed(self, calls: Sequence[Call]) -> bytes:
        """Return script calls packed into RESP, back to back (see ``wire.py``)."""
        if len(calls) == 1:
            return self.packer.pack(calls[0])
        return b"".join(self.packer.pack(call) for call in calls)

    def held_for(self, client: Any, make: Callable[[Any], Any]) -> Any:
        """Return the connection kept for a client's script calls (None: the client has none).

        Kept per client: a cluster executor sends through each node's own client.
        """
        entry = self.held.get(id(client))
        if entry is None or entry[0] is not client:
            if len(self.held) >= _HELD_LIMIT:
                self.held.clear()
            entry = (client, make(client) if usable(client) else None)
            self.held[id(client)] = entry
        return entry[1]

    def outgoing(self, batch: Batch) -> Sequence[Call]:
        """Return the calls of a batch about to be sent; the observers see it first."""
        if self.observers:
            for observer in self.observers:
                observer(batch)
        return batch.calls

    def load(self, name: str, route: str | None = None) -> Command:
        """Return the command that loads a script (``FUNCTION LOAD`` of the whole library)."""
        lib = self.library
        if lib is not None:
            return Command(("FUNCTION", "LOAD", lib.source.text), route=route)
        return Command(("SCRIPT", "LOAD", self.scripts[name].text), route=route)

    def source(self, name: str) -> ScriptSource:
        """Return the source a script's errors name lines of (the library's, with FCALL)."""
        lib = self.library
        return self.scripts[name] if lib is None else lib.source

    def reload_plan(self, batch: Batch) -> tuple[list[Call], list[tuple[int, bool]]]:
        """Return a batch that met NOSCRIPT as calls that load each script with its call.

        Each script call goes as MULTI, SCRIPT LOAD, EVALSHA, EXEC (MULTI, FUNCTION LOAD,
        FCALL, EXEC): one transaction on the call's own keys (one slot, as before). An
        atomic batch is one transaction already: its scripts (or the library) are loaded
        first inside it. Also returns where each call's reply is: (index among the
        replies, True when inside an EXEC's replies).
        """
        calls: list[Call] = []
        where: list[tuple[int, bool]] = []
        if batch.atomic:
            names = dict.fromkeys(c.name for c in batch.calls if isinstance(c, ScriptCall))
            if self.library is not None:
                names = dict.fromkeys(list(names)[:1])  # one library holds them all
            calls += [self.load(name) for name in names]
            for call in batch.calls:
                where.append((len(calls), False))
                calls.append(call)
            return calls, where
        for call in batch.calls:
            if isinstance(call, ScriptCall):
                key = call.keys[0]
                load = self.load(call.name, route=key)
                calls += [Command(("MULTI",), route=key), load, call, Command(("EXEC",), key)]
                where.append((len(calls) - 1, True))
            else:
                where.append((len(calls), False))
                calls.append(call)
        return calls, where

    @staticmethod
    def replies_at(where: Sequence[tuple[int, bool]], raw: Sequence[Any]) -> list[Any]:
        """Return the replies of a :meth:`reload_plan`, one per call of the batch."""
        out = []
        for index, inside in where:
            reply = raw[index]
            if inside and isinstance(reply, list):
                loaded, reply = reply  # EXEC's replies: SCRIPT (FUNCTION) LOAD's, the call's
                if isinstance(loaded, ResponseError) and LIBRARY_EXISTS not in str(loaded):
                    if isinstance(reply, ResponseError):
                        reply = loaded  # why the script is missing (a compile error)
            out.append(reply)
        return out

    def fall_back(self, replies: Sequence[Any]) -> None:
        """Raise :class:`FallBack`, and stop using Functions, when a reply says they fail.

        A reply is an error that :func:`refuses_functions`; the batch that met it ran none
        of its scripts (an unknown or refused command runs nothing), so it is sent again
        with EVALSHA. Also when another thread fell back first, while this batch was on
        its way with FCALL. A batch sent with EVALSHA sends neither FCALL nor FUNCTION, so
        it never meets such a reply: a batch falls back once at most.
        """
        for reply in replies:
            if refuses_functions(reply):
                self.library = None
                raise FallBack from reply

    @staticmethod
    def failed(replies: Sequence[Any]) -> bool:
        """Return True when a reply is an error (the rare case: then look closer)."""
        for reply in replies:
            if isinstance(reply, RedisError):
                return True
        return False

    @staticmethod
    def scripts_lost(batch: Batch, replies: Sequence[Any]) -> bool:
        """Return True when the replies say Redis does not know one of the batch's scripts."""
        return any(
            isinstance(call, ScriptCall)
            and (isinstance(reply, NoScriptError) or function_lost(reply))
            for call, reply in zip(batch.calls, replies, strict=True)
        )

    def checked(self, batch: Batch, replies: Sequence[Any]) -> list[Any]:
        """Return a batch's replies, raising the first error among them.

        A script's error names the file and line of ``lua/`` it came from.
        """
        for call, reply in zip(batch.calls, replies, strict=True):
            if isinstance(reply, RedisError):
                if isinstance(call, ScriptCall) and isinstance(reply, ResponseError):
                    raise type(reply)(self.source(call.name).explain(str(reply)))
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
        """Send one batch (one round trip, more after NOSCRIPT) and return its replies."""
        try:
            if isinstance(batch.calls[0], Scan):
                return [self.scan(self.outgoing(batch)[0])]  # type: ignore[arg-type]
            calls = self.outgoing(batch)
            while True:
                try:
                    return self.attempt(batch, calls)
                except FallBack:
                    continue  # once at most: then the executor has no library
        except RedisError as exc:
            raise self.storage_error(exc) from exc

    def attempt(self, batch: Batch, calls: Sequence[Call]) -> list[Any]:
        """Send a batch, and again with its scripts loaded if the server lacks them."""
        try:
            replies = self.send(calls, batch.atomic)
            if not self.failed(replies):
                return replies
            self.fall_back(replies)
            if self.scripts_lost(batch, replies):
                plan, where = self.reload_plan(batch)
                raw = self.send(plan, batch.atomic)
                self.fall_back(raw)
                replies = self.replies_at(where, raw)
            return self.checked(batch, replies)
        except ResponseError as exc:  # a transaction refused as a whole
            self.fall_back([exc])
            raise

    def send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send calls in one round trip; a call's error comes back as its reply."""
        return self.send_to(self.client, calls, atomic)

    def send_to(self, client: Any, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send calls in one round trip on a plain client (a server, or a cluster's node)."""
        if not atomic and script_calls_only(calls, ScriptCall):
            held: Optional[HeldConnection] = self.held_for(client, HeldConnection)
            if held is not None:
                replies = held.send(self.packed(calls), len(calls))
                if replies is not None:
                    return replies
        if len(calls) == 1 and not atomic:
            try:
                return [client.execute_command(*self.command(calls[0]), **RAW)]
            except ResponseError as exc:
                return [exc]
        pipe = client.pipeline(transaction=atomic)
        for call in calls:
            pipe.execute_command(*self.command(call), **RAW)
        return list(pipe.execute(raise_on_error=False))

    def scan(self, call: Scan) -> list[Any]:
        """Return every key matching the pattern (``SCAN`` to the end)."""
        return list(self.client.scan_iter(match=call.pattern, count=call.page))


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
        """Send one batch (one round trip, more after NOSCRIPT) and return its replies."""
        try:
            if isinstance(batch.calls[0], Scan):
                return [await self.scan(self.outgoing(batch)[0])]  # type: ignore[arg-type]
            calls = self.outgoing(batch)
            while True:
                try:
                    return await self.attempt(batch, calls)
                except FallBack:
                    continue  # once at most: then the executor has no library
        except RedisError as exc:
            raise self.storage_error(exc) from exc

    async def attempt(self, batch: Batch, calls: Sequence[Call]) -> list[Any]:
        """Send a batch, and again with its scripts loaded if the server lacks them."""
        try:
            replies = await self.send(calls, batch.atomic)
            if not self.failed(replies):
                return replies
            self.fall_back(replies)
            if self.scripts_lost(batch, replies):
                plan, where = self.reload_plan(batch)
                raw = await self.send(plan, batch.atomic)
                self.fall_back(raw)
                replies = self.replies_at(where, raw)
            return self.checked(batch, replies)
        except ResponseError as exc:  # a transaction refused as a whole
            self.fall_back([exc])
            raise

    async def send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send calls in one round trip; a call's error comes back as its reply."""
        return await self.send_to(self.client, calls, atomic)

    async def send_to(self, client: Any, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Send calls in one round trip on a plain client (a server, or a cluster's node)."""
        if not atomic and script_calls_only(calls, ScriptCall):
            held: Optional[AsyncHeldConnection] = self.held_for(client, AsyncHeldConnection)
            if held is not None:
                replies = await held.send(self.packed(calls), len(calls))
                if replies is not None:
                    return replies
        if len(calls) == 1 and not atomic:
            try:
                return [await client.execute_command(*self.command(calls[0]), **RAW)]
            except ResponseError as exc:
                return [exc]
        pipe = client.pipeline(transaction=atomic)
        for call in calls:
            pipe.execute_command(*self.command(call), **RAW)
        return list(await pipe.execute(raise_on_error=False))

    async def scan(self, call: Scan) -> list[Any]:
        """Return every key matching the pattern (``SCAN`` to the end)."""
        return [key async for key in self.client.scan_iter(match=call.pattern, count=call.page)]
