"""The lean wire for script calls: pre-packed commands on a connection the executor keeps.

redis-py's ``execute_command`` costs far more client CPU than the round trip it makes (a
pool checkout and release, observability hooks, a generator per argument while packing);
on the hot calls (acquire, release, renew) it was half of the client's work. Script calls
take a shorter way:

* **Packed once, sent as bytes.** A script call's head (the command, the script, its KEYS:
  twelve key names of a pool) is packed into RESP once (:class:`Packer`); each call packs
  only its ARGV, with hiredis.
* **A connection kept by the executor** (:class:`HeldConnection`, and
  :class:`AsyncHeldConnection` for asyncio): taken once from the client's own pool and kept,
  so redis-py still makes every connection (TLS, ACL, Sentinel's master lookup, the client's
  ``Retry``), and only its per-command bookkeeping is skipped. It serves one caller at a
  time; a call that finds it busy (another thread, another task) goes the usual way through
  the pool. A failed send or read disconnects it, as redis-py does, so it is never left with
  a reply unread; the client's ``Retry`` re-sends on the errors it is set up for, and a
  closed connection is opened again with its own ``connect()`` (which asks the Sentinels for
  the current master), as the pool would before lending it. After a fork the child takes a
  connection of its own.

Replies are read undecoded, as the executor reads every reply, and an error reply comes back
as the exception object in its place, as a pipeline with ``raise_on_error=False`` gives it.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional, Sequence

import hiredis
from redis.exceptions import ResponseError

_HEADS_LIMIT = 10_000


class Packer:
    """Pack script calls into RESP, each distinct head (command, script, KEYS) once.

    Parameters
    ----------
    head:
        Returns what a call sends before its ARGV (see ``BatchPlan.head``); the packed form
        is cached under that value, so a head that changes is packed again.

    """

    def __init__(self, head: Callable[[Any], tuple[Any, ...]]) -> None:
        self.head = head
        self.heads: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def pack(self, call: Any) -> bytes:
        """Return one script call as RESP bytes."""
        head = self.head(call)
        packed = self.heads.get(head)
        if packed is None:
            whole = hiredis.pack_command(head)
            packed = (len(head), whole[whole.index(b"\n") + 1 :])
            if len(self.heads) >= _HEADS_LIMIT:
                self.heads.clear()
            self.heads[head] = packed
        count, body = packed
        args = call.args
        if not args:
            return b"*%d\r\n%b" % (count, body)
        tail = hiredis.pack_command(tuple(args))
        return b"*%d\r\n%b%b" % (count + len(args), body, tail[tail.index(b"\n") + 1 :])


def usable(client: Any) -> bool:
    """Return True when a client's calls may go through a held connection of its pool.

    A plain ``redis.Redis`` (or its asyncio twin) with a connection pool; not a client
    bound to a single connection of its own, nor a cluster client (its executor sends
    through each node's plain client).
    """
    return (
        getattr(client, "connection_pool", None) is not None
        and getattr(client, "connection", None) is None
        and not getattr(client, "single_connection_client", False)
        and not getattr(client, "_single_connection_client", False)
    )


class HeldConnection:
    """One connection of a sync client's pool, kept for script calls.

    Parameters
    ----------
    client:
        The ``redis.Redis`` whose pool the connection comes from.

    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.conn: Any = None
        self.pid = 0

    def send(self, packed: bytes, count: int) -> Optional[list[Any]]:
        """Send packed commands and return their ``count`` replies; None when busy."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            conn = self.conn
            if conn is None or self.pid != os.getpid():
                conn = self.conn = self.client.connection_pool.get_connection()
                self.pid = os.getpid()

            def roundtrip() -> list[Any]:
                if not _connected(conn):  # connect() finds a Sentinel's current master
                    conn.connect()
                conn.send_packed_command((packed,))
                replies: list[Any] = []
                for _ in range(count):
                    try:
                        replies.append(conn.read_response(disable_decoding=True))
                    except ResponseError as exc:
                        replies.append(exc)
                return replies

            try:
                return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                    roundtrip, lambda error: conn.disconnect()
                )
            finally:
                if _going_away(conn):
                    conn.disconnect()
        finally:
            self.lock.release()


class AsyncHeldConnection:
    """One connection of an asyncio client's pool, kept for script calls.

    Parameters
    ----------
    client:
        The ``redis.asyncio.Redis`` whose pool the connection comes from.

    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.busy = False
        self.conn: Any = None
        self.pid = 0

    async def send(self, packed: bytes, count: int) -> Optional[list[Any]]:
        """Send packed commands and return their ``count`` replies; None when busy."""
        if self.busy:
            return None
        self.busy = True
        try:
            conn = self.conn
            if conn is None or self.pid != os.getpid():
                conn = self.conn = await self.client.connection_pool.get_connection()
                self.pid = os.getpid()

            async def roundtrip() -> list[Any]:
                if not _connected(conn):  # connect() finds a Sentinel's current master
                    await conn.connect()
                await conn.send_packed_command((packed,))
                replies: list[Any] = []
                for _ in range(count):
                    try:
                        replies.append(await conn.read_response(disable_decoding=True))
                    except ResponseError as exc:
                        replies.append(exc)
                return replies

            async def fail(error: Exception) -> None:
                await conn.disconnect()

            try:
                return await conn.retry.call_with_retry(roundtrip, fail)  # type: ignore[no-any-return]
            finally:
                if _going_away(conn):
                    await conn.disconnect()
        finally:
            self.busy = False


def _connected(conn: Any) -> bool:
    """Return True when a connection is open (redis-py's ``is_connected``, 7.0 and later)."""
    try:
        return bool(conn.is_connected)
    except AttributeError:
        return conn._sock is not None


def _going_away(conn: Any) -> bool:
    """Return True when the server announced maintenance: reconnect before the next call.

    redis-py checks this after every command and as a connection returns to its pool;
    ``should_reconnect`` came with redis-py 6.3.
    """
    should = getattr(conn, "should_reconnect", None)
    return should is not None and bool(should())


def script_calls_only(calls: Sequence[Any], script_type: type) -> bool:
    """Return True when every call is a script call (no reply callbacks to apply)."""
    for call in calls:
        if type(call) is not script_type:
            return False
    return True
