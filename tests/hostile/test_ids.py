"""Ids: an id that is not a UUID names nothing.

``get_proxy``/``delete_proxy`` raise ProxyNotFoundError, ``get_pool``/``delete_pool``/
``list_proxies`` PoolNotFoundError, ``get_lease`` and ``get_proxy_by_id`` return None,
``list_leases`` and ``list_health_records`` return []. Releasing a lease whose id (or pool
id) is not a UUID is a no-op; renewing it raises LeaseLostError. Other spellings of a UUID
(upper case, braces, ``urn:uuid:``) name the same object.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any

import pytest
from pharox import (
    HealthCheckResult,
    Lease,
    LeaseStatus,
    PoolNotFoundError,
    ProxyNotFoundError,
    ProxyProtocol,
    ProxyStatus,
)

from pharox_redis import LeaseLostError

from ..helpers import make_pool
from ..helpers.refusals import Seeded, assert_clean, refuse, writes_nothing

# ---------------------------------------------------------------------------- ids

BAD_IDS = [
    "x",
    "../",
    "../../etc/passwd",
    "{x}",
    "}{",
    "",
    " ",
    "*",
    "nope",
    "\x00",
    "\n",
    "x" * 10_000,
    "🚀",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-0000000000000",
    None,
    5,
    3.5,
    b"\x00" * 16,
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v)[:20])
def test_ids_that_are_not_uuids_name_nothing(seeded: Seeded, bad: Any) -> None:
    s = seeded.storage
    refuse(s, ProxyNotFoundError, lambda: s.get_proxy(bad))
    refuse(s, ProxyNotFoundError, lambda: s.delete_proxy(bad))
    refuse(s, PoolNotFoundError, lambda: s.get_pool(bad))
    refuse(s, PoolNotFoundError, lambda: s.delete_pool(bad))
    refuse(s, PoolNotFoundError, lambda: s.list_proxies(bad))
    with writes_nothing(s):
        assert s.get_lease(bad) is None
        assert s.get_proxy_by_id(bad) is None
        assert s.list_leases(bad) == [] or bad is None  # None: every consumer's leases
        assert s.list_health_records(bad) == []
        assert s.get_last_health_result(bad) is None
        assert (
            s.apply_health_check_result(
                HealthCheckResult.model_construct(
                    proxy_id=bad,
                    status=ProxyStatus.ACTIVE,
                    latency_ms=1,
                    protocol=ProxyProtocol.HTTP,
                    checked_at=datetime.now(timezone.utc),
                    error_message=None,
                )
            )
            is None
        )
    assert len(s.list_proxies(str(seeded.pool.id))) == 3


def test_other_spellings_of_a_uuid_name_the_same_objects(seeded: Seeded) -> None:
    s, proxy, lease = seeded.storage, seeded.proxies[0], seeded.lease
    for spell in (str.upper, lambda v: "{" + v + "}", lambda v: "urn:uuid:" + v):
        with writes_nothing(s):
            assert s.get_proxy(spell(str(proxy.id))).id == proxy.id
            assert s.get_pool(spell(str(seeded.pool.id))).id == seeded.pool.id
            held = s.get_lease(spell(str(lease.id)))
            assert held is not None and held.id == lease.id
    s.delete_proxy("urn:uuid:" + str(seeded.proxies[2].id))
    assert len(s.list_proxies(str(seeded.pool.id))) == 2
    assert_clean(s)


@pytest.mark.parametrize("lease_id", ["x", "../", "{x}", None, 5, ""])
@pytest.mark.parametrize("pool_id", ["real", "x", "{x}", None])
def test_releasing_or_renewing_a_lease_with_a_weird_id_changes_nothing(
    seeded: Seeded, lease_id: Any, pool_id: Any
) -> None:
    s, m, real = seeded.storage, seeded.manager, seeded.lease
    weird = Lease.model_construct(
        id=lease_id,
        proxy_id=real.proxy_id,
        consumer_id=real.consumer_id,
        pool_id=real.pool_id if pool_id == "real" else pool_id,
        pool_name="seed",
        status=LeaseStatus.ACTIVE,
        acquired_at=real.acquired_at,
        expires_at=real.expires_at,
        released_at=None,
    )
    with writes_nothing(s):
        s.release_lease(weird)
        m.release_proxy(weird)
    refuse(s, LeaseLostError, lambda: m.renew_lease(weird, 30))
    held = s.get_lease(str(real.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE
    assert s.get_proxy(str(real.proxy_id)).current_leases == 1


def test_a_lease_of_another_pool_or_a_wrong_pool_id_is_not_released(seeded: Seeded) -> None:
    s, real = seeded.storage, seeded.lease
    other = make_pool(s, "other")
    for pool_id in (other.id, uuid.uuid4()):
        moved = real.model_copy(update={"pool_id": pool_id})
        with writes_nothing(s):
            s.release_lease(moved)
        refuse(s, LeaseLostError, partial(seeded.manager.renew_lease, moved, 30))
    held = s.get_lease(str(real.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE
