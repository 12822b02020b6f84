"""Durations: a lease duration is an int or float (not bool) in (0, 100 years].

Anything else raises InvalidLeaseError, through ``create_lease``, the manager's
``acquire*``/``with_proxy`` and ``renew_lease`` alike.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from pharox import InvalidLeaseError

from pharox_redis.operations.validation import MAX_LEASE_SECONDS

from ..helpers.refusals import Seeded, assert_clean, refuse

# ---------------------------------------------------------------------------- durations

BAD_DURATIONS = [
    0,
    0.0,
    -0.0,
    -1,
    -1e-9,
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    10**400,
    MAX_LEASE_SECONDS + 1,
    "5",
    "",
    None,
    True,
    False,
    [],
    Decimal("5"),
    1j,
]


@pytest.mark.parametrize("duration", BAD_DURATIONS, ids=lambda v: repr(v)[:20])
def test_bad_durations_are_refused_everywhere(seeded: Seeded, duration: Any) -> None:
    s, m = seeded.storage, seeded.manager
    for call in (
        lambda: s.create_lease(seeded.proxies[2], "c", duration),
        lambda: m.acquire("seed", consumer_name="c", duration_seconds=duration),
        lambda: m.acquire_proxy("seed", duration_seconds=duration),
        lambda: m.acquire_proxy_with_retry("seed", duration_seconds=duration, max_attempts=1),
        lambda: m.with_proxy("seed", duration_seconds=duration).__enter__(),
        lambda: m.renew_lease(seeded.lease, duration),
    ):
        refuse(s, InvalidLeaseError, call)
    expires = seeded.lease.expires_at
    held = s.get_lease(str(seeded.lease.id))
    assert held is not None and held.expires_at == expires  # the renewal did not happen
    assert len(s.list_leases()) == 2


@pytest.mark.parametrize("duration", [1e-300, 1e-6, MAX_LEASE_SECONDS, float(MAX_LEASE_SECONDS)])
def test_extreme_but_valid_durations_are_accepted(seeded: Seeded, duration: float) -> None:
    s, m = seeded.storage, seeded.manager
    leased = m.acquire("seed", duration_seconds=duration)
    assert leased is not None
    expected = max(1, round(duration * 1_000_000))
    got = leased.lease.expires_at - leased.lease.acquired_at
    assert round(got.total_seconds() * 1_000_000) == expected
    if duration > 1:
        assert m.renew_lease(leased, duration).expires_at >= leased.lease.acquired_at
    m.release_proxy(leased)
    s.cleanup_expired_leases()
    assert_clean(s)
