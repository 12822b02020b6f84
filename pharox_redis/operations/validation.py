"""Checks on what callers pass in, made before anything is written.

Bad input gets a ``ValueError`` (a programmer error) or the pharox error pharox's own
adapters raise, never a Redis or Lua error and never a partial write.
"""

from __future__ import annotations

import math
from typing import Any, Optional
from uuid import UUID

from pharox import InvalidLeaseError

MAX_LEASE_SECONDS = 100 * 365 * 24 * 3600


def parse_uuid(value: Any) -> Optional[UUID]:
    """Return value as a UUID, or None when it is not one."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def lease_duration_us(seconds: Any) -> int:
    """Return a lease duration in microseconds.

    Raises
    ------
    InvalidLeaseError
        Unless ``seconds`` is a finite number in (0, 100 years].

    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidLeaseError(f"duration_seconds must be a number, got {seconds!r}")
    if not seconds > 0:  # also NaN; no float() of an int too large for a float
        raise InvalidLeaseError("duration_seconds must be positive.")
    if seconds > MAX_LEASE_SECONDS:  # also inf
        raise InvalidLeaseError(f"duration_seconds may be at most {MAX_LEASE_SECONDS} (100 years).")
    return max(1, round(seconds * 1_000_000))


def check_text(value: Any, what: str) -> str:
    """Return ``value`` if it is a str that encodes to UTF-8, else raise ValueError.

    Any text is a valid pool or consumer name (names are hash fields and values, never part
    of a key), but not a str with lone surrogates, which has no UTF-8 encoding.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


def check_settings(
    lease_retention_seconds: Any, health_history: Any, wait_replicas: Any, wait_timeout: Any
) -> None:
    """Raise ValueError for a storage setting out of range."""
    number = isinstance(lease_retention_seconds, (int, float))
    if not number or not math.isfinite(lease_retention_seconds) or lease_retention_seconds < 0:
        raise ValueError("lease_retention_seconds must be a finite number >= 0")
    if not isinstance(health_history, int) or health_history < 1:
        raise ValueError("health_history must be at least 1")
    if not isinstance(wait_replicas, int) or wait_replicas < 0:
        raise ValueError("wait_replicas must be an int >= 0")
    if not (isinstance(wait_timeout, (int, float)) and 0 < wait_timeout < 3600):
        raise ValueError("wait_timeout must be a number of seconds in (0, 3600)")
