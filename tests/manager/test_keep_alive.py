"""Keep-alive: a ``with`` block longer than the lease keeps it, and notices when it is lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pharox import Lease, LeaseStatus

from pharox_redis import LeasedProxy, LeaseLostError, RedisStorage

from ..helpers import recomputed_stats, sleeper, stored_stats
from ..helpers.managers import count, is_async, seed

# ---------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("method", ["with_proxy", "with_lease"])
def test_keep_alive_holds_the_lease_through_a_long_block(
    manager: Any, method: str, server_now: Callable[[], datetime]
) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    sleep = sleeper(manager)
    started = time.monotonic()
    # 1.2 s leases held for 2 s: a renewal has 0.8 s to land, enough with the CPUs busy
    # (0.5 s leases were lost under a load average of 15 on 2 cores).
    with getattr(manager, method)(pool.name, duration_seconds=1.2, keep_alive=True) as got:
        lease = got.lease if isinstance(got, LeasedProxy) else got
        assert isinstance(lease, Lease)
        for _ in range(4):
            sleep(0.5)
            stored = manager.storage.get_lease(str(lease.id))
            assert stored is not None and stored.status is LeaseStatus.ACTIVE
            assert stored.expires_at > server_now()
        assert manager.cleanup_expired_leases() == 0
        assert manager.acquire_proxy(pool.name) is None
        if isinstance(got, LeasedProxy):
            assert not got.lost
            got.check()
    assert time.monotonic() - started >= 2.0
    assert lease.expires_at - lease.acquired_at > timedelta(seconds=1.3)  # renewed
    stored = manager.storage.get_lease(str(lease.id))
    assert stored is not None and stored.status is LeaseStatus.RELEASED
    assert count(manager, proxy) == 0


def test_keep_alive_notices_a_lease_taken_away(manager: Any, other: RedisStorage) -> None:
    pool, (proxy,) = seed(manager, max_concurrency=1)
    sleep = sleeper(manager)
    with pytest.raises(LeaseLostError) as info:
        with manager.with_proxy(pool.name, duration_seconds=0.3, keep_alive=True) as leased:
            assert leased is not None
            other.release_lease(leased.lease)  # someone else releases it
            taken = time.monotonic()
            while not leased.lost and time.monotonic() - taken < 1.5:
                sleep(0.05)
            assert leased.lost and time.monotonic() - taken < 1.0
            with pytest.raises(LeaseLostError):
                leased.check()
            if is_async(manager):
                assert manager.block_cancelled  # the async manager cancels the block
    assert info.value.lease.id == leased.lease.id
    assert count(manager, proxy) == 0
    assert stored_stats(manager.storage, pool) == recomputed_stats(manager.storage, pool)
    lease = manager.acquire_proxy(pool.name)
    assert lease is not None  # the proxy is free again, counters intact
    manager.release_proxy(lease)
