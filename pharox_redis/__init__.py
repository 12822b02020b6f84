"""pharox-redis: pharox proxy pools and leases in Redis, shared by a fleet of processes."""

from __future__ import annotations

from .errors import RedisStorageError
from .keys import KeySchema
from .storage import RedisStorage

__version__ = "0.1.0"

__all__ = ["KeySchema", "RedisStorage", "RedisStorageError", "__version__"]
