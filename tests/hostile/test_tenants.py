"""Tenants: two prefixes on one Redis never see each other's data.

Also when one prefix is a prefix of the other (``a`` and ``a:b``, ``a`` and ``ab``) or holds
glob characters (``*``, ``?``, ``[``): same pool ids and names, same proxy ids, leases,
cleanup and audit stay apart. A prefix that is not a non-empty ``str`` without ``{`` and
``}`` is refused.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from pharox import LeaseStatus, ProxyPool

from pharox_redis import KeySchema, LeaseLostError, RedisProxyManager

from ..helpers import make_proxy
from ..helpers.refusals import MakeStorage, assert_clean, contents

# ---------------------------------------------------------------------------- tenants


def _tenant_pairs(prefix: str) -> list[tuple[str, str]]:
    return [
        (prefix, prefix + ":b"),
        (prefix + ":b", prefix),
        (prefix, prefix + "b"),
        (prefix + "*", prefix + "-x"),
        (prefix + "?", prefix + "x"),
        (prefix + "[x]", prefix + "x"),
        (prefix + "\\", prefix + "-y"),
    ]


@pytest.mark.parametrize("pair", range(7))
def test_tenants_never_see_each_other(make_storage: MakeStorage, prefix: str, pair: int) -> None:
    name_a, name_b = _tenant_pairs(prefix)[pair]
    a, b = make_storage(prefix=name_a), make_storage(prefix=name_b)
    pool = ProxyPool(name="same")  # the same pool id and name in both tenants
    proxy = make_proxy(pool, max_concurrency=1)  # and the same proxy id
    for s in (a, b):
        s.save_pool(pool)
        s.save_proxy(proxy)
    short: Any = 0.2  # pharox types duration_seconds as int; fractions are fine here
    a_short = a.create_lease(proxy, "worker", short)
    b_short = b.create_lease(proxy, "worker", short)
    assert a_short.id != b_short.id
    assert a.get_lease(str(b_short.id)) is None and b.get_lease(str(a_short.id)) is None
    assert {lease.id for lease in a.list_leases()} == {a_short.id}
    assert {lease.id for lease in b.list_leases()} == {b_short.id}

    b.release_lease(a_short)  # b knows nothing of a's lease: a keeps it
    held = a.get_lease(str(a_short.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE
    with pytest.raises(LeaseLostError):
        RedisProxyManager(b).renew_lease(a_short, 60)

    time.sleep(0.3)
    assert a.cleanup_expired_leases() == 1
    still = b.get_lease(str(b_short.id))  # past its deadline: shown ended at its deadline,
    assert still is not None and still.released_at == still.expires_at
    assert b.get_proxy(str(proxy.id)).current_leases == 1  # but not reclaimed: b's cleanup is b's
    assert b.cleanup_expired_leases() == 1

    keys_a, keys_b = set(contents(a)), set(contents(b))
    assert keys_a and keys_b and not keys_a & keys_b
    assert all(k.startswith(name_a.encode() + b":{") for k in keys_a)
    assert all(k.startswith(name_b.encode() + b":{") for k in keys_b)
    report_a, report_b = a.audit(), b.audit()
    assert report_a.drift == () and report_b.drift == ()
    assert (report_a.pools, report_a.proxies) == (report_b.pools, report_b.proxies) == (1, 1)
    a.audit(repair=True)  # a repair of one tenant never touches the other
    assert set(contents(b)) == keys_b

    a.delete_pool(str(pool.id))
    assert b.get_pool(str(pool.id)) == pool and b.get_proxy(str(proxy.id)).id == proxy.id
    assert a.find_available_proxy("same") is None
    found = b.find_available_proxy("same")
    assert found is not None and found.id == proxy.id
    assert a.list_pools() == [] and [p.id for p in b.list_pools()] == [pool.id]
    assert_clean(a)
    assert_clean(b)


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "{global}", None, 5, b"pharox"])
def test_prefixes_that_would_break_the_key_schema_are_refused(
    make_storage: MakeStorage, bad: Any
) -> None:
    with pytest.raises(ValueError, match="prefix"):
        KeySchema(bad)
    with pytest.raises(ValueError, match="prefix"):
        make_storage(prefix=bad)
