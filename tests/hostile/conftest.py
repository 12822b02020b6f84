"""Hostile and invalid input: every refusal is clear, writes nothing and leaves the audit clean.

Each case runs on fakeredis and on a private redis-server. A refused call raises ValueError
(pydantic's ValidationError is one) or a pharox error (``PoolNotFoundError``,
``ProxyNotFoundError``, ``InvalidLeaseError``...), never a redis-py error and never
``RedisStorageError`` (so no Lua error either): everything is checked before anything is
sent. The keys under the test's prefix are then byte for byte what they were, and
``storage.audit().drift`` is empty (``tests.helpers.refusals.refuse``). Each module states the
rules of its subject.
"""

from __future__ import annotations

import pytest

from pharox_redis import RedisStorage

from ..helpers.refusals import Seeded


@pytest.fixture
def seeded(storage: RedisStorage) -> Seeded:
    """A pool with proxies, an active and a released lease and a health row (``Seeded``)."""
    return Seeded(storage)
