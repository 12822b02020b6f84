"""pharox-redis: pharox proxy pools and leases in Redis, shared by a fleet of processes."""

from __future__ import annotations

from .async_manager import AsyncRedisProxyManager
from .async_storage import AsyncRedisStorage
from .errors import LeaseLostError, NotReplicatedError, RedisStorageError
from .keys import KeySchema
from .leased_proxy import LeasedProxy
from .manager import RedisProxyManager
from .misses import AcquireMiss, MissReason
from .operations.audit import AuditReport, Drift
from .operations.proxies import SavedProxies
from .storage import RedisStorage

__version__ = "0.1.0"

__all__ = [
    "AcquireMiss",
    "AsyncRedisProxyManager",
    "AsyncRedisStorage",
    "AuditReport",
    "Drift",
    "KeySchema",
    "LeaseLostError",
    "LeasedProxy",
    "MissReason",
    "NotReplicatedError",
    "RedisProxyManager",
    "RedisStorage",
    "RedisStorageError",
    "SavedProxies",
    "__version__",
]
