"""Exit codes of ``pharox-redis`` and the one error every command raises to leave with one.

Every failure a user can cause (a bad URL, an unreachable server, an unknown pool or lease,
a malformed import file) ends the command with a one-line message on stderr and its own exit
code, never a traceback. Commands raise :class:`CliError`; :func:`exit_code_of` maps the
errors raised below the command line (redis-py, the storage, pharox) onto the same codes.
"""

from __future__ import annotations

import enum
from typing import Optional

import redis
from pharox import ConsumerNotFoundError, PoolNotFoundError, ProxyNotFoundError

from ..errors import RedisStorageError


class ExitCode(enum.IntEnum):
    """What ``pharox-redis`` exits with (documented in the README, "Exit codes")."""

    OK = 0
    DRIFT = 1  # verify found drift (and --repair did not clear it)
    USAGE = 2  # a bad option or argument, as argparse reports it; a URL that is not Redis's
    CONNECTION = 3  # Redis cannot be reached or refused the command
    NOT_FOUND = 4  # no such pool or lease
    BAD_INPUT = 5  # an import file with bad lines (nothing was written), a value refused
    INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure to report in one line and leave with ``code``.

    Parameters
    ----------
    code:
        The exit code.
    message:
        The line printed after ``error: `` (secrets already redacted).
    details:
        Lines printed before it (one per bad line of an import file).

    """

    def __init__(self, code: ExitCode, message: str, details: Optional[list[str]] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


def exit_code_of(exc: BaseException) -> Optional[ExitCode]:
    """Return the exit code for an error raised below the command line, None for a bug."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, (PoolNotFoundError, ProxyNotFoundError, ConsumerNotFoundError)):
        return ExitCode.NOT_FOUND
    if isinstance(exc, (RedisStorageError, redis.RedisError, OSError)):
        return ExitCode.CONNECTION
    if isinstance(exc, ValueError):  # the storage refuses a value (its contract for bad input)
        return ExitCode.BAD_INPUT
    return None


def one_line(exc: BaseException) -> str:
    """Return an error's message on one line (redis-py's can span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
