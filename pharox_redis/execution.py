"""What the sync and async storages share about executing a batch on redis-py.

A batch of one call is sent as one command; a longer (or atomic) one as a pipeline read
with ``raise_on_error=False``. Scripts go out as EVALSHA; when Redis answers NOSCRIPT (after
a restart, a failover or ``SCRIPT FLUSH``) the shell loads the scripts named here and sends
the whole batch again, which is safe because every script is idempotent. Replies are read
as bytes (``NEVER_DECODE``), whatever the client's ``decode_responses``.
"""

from __future__ import annotations

from typing import Any, Sequence

import redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from .core import Batch, Call, ScriptCall, StorageCore
from .errors import RedisStorageError
from .keys import KeySchema
from .scripts import sources

RAW = {NEVER_DECODE: True}
RETRIED_ERRORS = (redis.ConnectionError,)  # what redis-py's Retry re-sends (from_url)
DEFAULT_LEASE_RETENTION_SECONDS = 300.0
DEFAULT_HEALTH_HISTORY = 100
STORAGE_OPTIONS = (
    "prefix",
    "lease_retention_seconds",
    "health_history",
    "wait_replicas",
    "wait_timeout",
)


class StorageShell:
    """What the sync and async storages hold: the sans-I/O core and their own scripts.

    Each instance registers the scripts with its own client (``register_script``), so no
    script state is shared through a class or a module.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "pharox",
        lease_retention_seconds: float = DEFAULT_LEASE_RETENTION_SECONDS,
        health_history: int = DEFAULT_HEALTH_HISTORY,
        wait_replicas: int = 0,
        wait_timeout: float = 0.05,
    ) -> None:
        self.client = client
        self.core = StorageCore(
            KeySchema(prefix), lease_retention_seconds, health_history, wait_replicas, wait_timeout
        )
        self._scripts = {name: client.register_script(src) for name, src in sources().items()}
        self._shas: dict[str, str] = {name: s.sha for name, s in self._scripts.items()}

    def _queue_with_scripts(self, pipe: Any, batch: Batch) -> list[tuple[int, bool]]:
        """Queue a batch that met NOSCRIPT so that no SCRIPT FLUSH can undo its reload.

        Each script call goes as MULTI, SCRIPT LOAD of its script, EVALSHA, EXEC: one
        transaction on the call's own keys (one slot, as before). An atomic batch is one
        transaction already (``pipe`` was made with ``transaction=True``): its scripts are
        loaded first inside it. Returns where each call's reply is, for
        :func:`with_scripts_replies`: (index in the pipeline's replies, inside an EXEC).
        """
        where: list[tuple[int, bool]] = []
        if batch.atomic:
            names = dict.fromkeys(c.name for c in batch.calls if isinstance(c, ScriptCall))
            for name in names:
                pipe.script_load(self._scripts[name].script)
            for i, call in enumerate(batch.calls):
                self._send(pipe, call)
                where.append((len(names) + i, False))
            return where
        at = 0
        for call in batch.calls:
            if isinstance(call, ScriptCall):
                pipe.execute_command("MULTI")
                pipe.execute_command("SCRIPT", "LOAD", self._scripts[call.name].script)
                self._send(pipe, call)
                pipe.execute_command("EXEC", **RAW)
                where.append((at + 3, True))
                at += 4
            else:
                self._send(pipe, call)
                where.append((at, False))
                at += 1
        return where

    def _send(self, target: Any, call: Call) -> Any:
        """Send a call on the client or queue it on a pipeline; replies stay bytes."""
        return target.execute_command(*wire_args(call, self._shas), **RAW)


def wire_args(call: Call, shas: dict[str, str]) -> tuple[Any, ...]:
    """Return the command a call sends (EVALSHA for scripts)."""
    if isinstance(call, ScriptCall):
        return ("EVALSHA", shas[call.name], len(call.keys), *call.keys, *call.args)
    return tuple(call.args)


def with_scripts_replies(where: Sequence[tuple[int, bool]], raw: Sequence[Any]) -> list[Any]:
    """Return the replies of a batch sent by ``_queue_with_scripts``, one per call."""
    out = []
    for index, inner in where:
        reply = raw[index]
        if inner and isinstance(reply, list):
            reply = reply[1]  # EXEC's replies: SCRIPT LOAD's, then the script's
        out.append(reply)
    return out


def single(batch: Batch) -> bool:
    """Return True when a batch is sent as one plain command rather than a pipeline."""
    return len(batch.calls) == 1 and not batch.atomic


def scripts_lost(batch: Batch, replies: Sequence[Any]) -> bool:
    """Return True when a pipeline's replies say Redis does not know one of its scripts."""
    return any(
        isinstance(call, ScriptCall) and isinstance(reply, NoScriptError)
        for call, reply in zip(batch.calls, replies, strict=True)
    )


def raise_errors(replies: Sequence[Any]) -> list[Any]:
    """Return a pipeline's replies, raising the first error among them."""
    for reply in replies:
        if isinstance(reply, RedisError):
            raise reply
    return list(replies)


def storage_error(exc: RedisError) -> RedisStorageError:
    """Wrap a redis-py error in the pharox hierarchy."""
    return RedisStorageError(f"Redis {type(exc).__name__}: {exc}")


def split_options(options: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the storage's own options from ``from_url`` keyword arguments."""
    return {k: options.pop(k) for k in STORAGE_OPTIONS if k in options}


def default_client_options(socket_timeout: float, asyncio: bool = False) -> dict[str, Any]:
    """Return the connection options ``from_url`` uses: timeouts and a bounded retry.

    A dropped or refused connection (``ConnectionError``, which includes Redis still
    loading its data after a restart) is retried 3 times, 0.04, 0.08 and 0.16 s apart:
    re-sending is safe because every script is idempotent (see ``core.py``). A timeout is
    not retried here: ``socket_timeout`` is what the caller agreed to wait, and redis-py
    would wait it again on every attempt. The managers' own ``retries`` re-send a lost
    acquire or release, timeouts included.

    No ``health_check_interval``: redis-py runs its PING under the same ``Retry``, nested
    inside the command's own, so against a stalled server one command waited 16 socket
    timeouts; a dead idle connection is caught by the retry of the command instead.
    redis.asyncio needs its own ``Retry`` class: the sync one would not await the attempt
    it retries.
    """
    retry_class = AsyncRetry if asyncio else Retry
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": retry_class(
            ExponentialBackoff(cap=0.5, base=0.02), retries=3, supported_errors=RETRIED_ERRORS
        ),
        "retry_on_error": list(RETRIED_ERRORS),
    }
