"""Exceptions raised by pharox-redis, all within pharox's hierarchy."""

from __future__ import annotations

from pharox import PharoxError


class RedisStorageError(PharoxError):
    """Redis could not be reached, timed out, or refused a command.

    Raised ``from`` the underlying redis-py exception, which stays available as
    ``__cause__``.
    """
