"""Client clocks off by an hour: leases are stamped and expired by the server's clock.

``time.time`` and ``datetime.now`` are patched in every loaded pharox, pharox_redis and
redis module; a 2 s lease still lasts 2 s, and cleanup run by a client an hour ahead
reclaims nothing early. The test ends with a clean audit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pharox import Lease, LeaseStatus

from pharox_redis import RedisProxyManager, RedisStorage, flows
from pharox_redis.server import RedisServer

from ..helpers import seed_pool, server_now
from ..helpers.faults import connect

pytestmark = pytest.mark.real_redis

SKEW = timedelta(hours=1)
SKEW_LEASE_SECONDS = 2.0
_REAL_DATETIME = datetime


class _AnyDatetime(type):
    """Metaclass: the skewed class still recognises every real datetime as its own."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _REAL_DATETIME)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _REAL_DATETIME)


def sleep_until(storage: RedisStorage, moment: datetime) -> None:
    """Sleep until the server's clock has passed ``moment``."""
    while (left := (moment - server_now(storage.client)).total_seconds()) > 0:
        time.sleep(min(left, 0.5) + 0.001)


@contextmanager
def skewed_clock(offset: timedelta) -> Iterator[None]:
    """Move this process's wall clock by ``offset`` for pharox, pharox_redis and redis-py.

    ``time.time``/``time.time_ns`` everywhere, and ``datetime.now``/``utcnow`` in every
    loaded module of those packages that imported the ``datetime`` class.
    """
    real_time, real_time_ns = time.time, time.time_ns
    seconds = offset.total_seconds()

    class SkewedDatetime(_REAL_DATETIME, metaclass=_AnyDatetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return _REAL_DATETIME.now(tz) + offset

        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return _REAL_DATETIME.now(timezone.utc).replace(tzinfo=None) + offset

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() + seconds)
        patch.setattr(time, "time_ns", lambda: real_time_ns() + int(seconds * 1e9))
        for name, module in list(sys.modules.items()):
            if module is None or name.split(".")[0] not in ("pharox", "pharox_redis", "redis"):
                continue
            for attr, value in list(vars(module).items()):
                if value is _REAL_DATETIME:
                    patch.setattr(module, attr, SkewedDatetime)
        yield


@pytest.mark.slow
def test_skewed_client_clocks_do_not_change_lease_expiry(opened: list[RedisStorage]) -> None:
    """Clients an hour ahead and an hour behind lease for 2 s: the lease lasts 2 s.

    acquired_at, expires_at and released_at are the server's; a cleanup run by a client
    an hour ahead reclaims nothing early; the lease is reclaimed once the server's clock
    passes its expiry.
    """
    with RedisServer() as server:
        direct = connect(server.url, opened)
        pool = seed_pool(direct, 2, max_concurrency=1)
        storage = connect(server.url, opened)
        manager = RedisProxyManager(storage)
        held: dict[str, Lease] = {}
        for name, offset in (("ahead", SKEW), ("behind", -SKEW)):
            with skewed_clock(offset):
                skew = flows.now_utc() - datetime.now(timezone.utc)
                assert abs(skew - offset) < timedelta(seconds=1), "the clock is not skewed"
                assert (
                    abs(time.time() - offset.total_seconds() - _REAL_DATETIME.now().timestamp()) < 1
                )
                before = server_now(direct.client)
                lease = manager.acquire_proxy(pool.name, name, SKEW_LEASE_SECONDS)
                after = server_now(direct.client)
                assert lease is not None
                assert before <= lease.acquired_at <= after, (before, lease, after)
                assert lease.expires_at - lease.acquired_at == timedelta(seconds=SKEW_LEASE_SECONDS)
                assert storage.cleanup_expired_leases() == 0
                assert manager.cleanup_expired_leases() == 0
                held[name] = lease

        sleep_until(direct, max(x.acquired_at for x in held.values()) + timedelta(seconds=1.5))
        for offset in (SKEW, -SKEW):
            with skewed_clock(offset):
                assert manager.acquire_proxy(pool.name, "late", SKEW_LEASE_SECONDS) is None
                assert storage.cleanup_expired_leases() == 0
        for lease in held.values():
            stored = direct.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.ACTIVE

        sleep_until(direct, max(x.expires_at for x in held.values()))
        with skewed_clock(-SKEW):
            assert storage.cleanup_expired_leases() == 2
        for lease in held.values():
            stored = direct.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.RELEASED
            assert stored.released_at is not None
            assert timedelta(0) <= stored.released_at - lease.expires_at < timedelta(seconds=1)

        with skewed_clock(SKEW):
            before = server_now(direct.client)
            lease = manager.acquire_proxy(pool.name, "ahead", 60)
            assert lease is not None
            manager.release_proxy(lease)
            after = server_now(direct.client)
        assert lease.released_at is not None and before <= lease.released_at <= after
        report = direct.audit()
        assert report.drift == ()
        assert report.active_leases == 0, report
