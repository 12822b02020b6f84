"""Wrong types: a pharox model argument that is not that model raises ValueError.

``save_pool(None)``, ``release_lease("id")``, ``renew_lease("id")``, ``filters={...}``... The
asyncio storage refuses what the sync one does, writing nothing: they share one core.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, Callable

import pytest
from pharox import (
    InvalidLeaseError,
    LeaseStatus,
    PharoxError,
    PoolNotFoundError,
    ProxyNotFoundError,
    ProxyPool,
)

from ..helpers import AsyncFacade, make_proxy
from ..helpers.refusals import Seeded, deep, modified, refuse

# ---------------------------------------------------------------------------- wrong types


def test_arguments_of_the_wrong_type_are_refused(seeded: Seeded) -> None:
    s, m = seeded.storage, seeded.manager
    refuse(s, ValueError, lambda: s.save_pool(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.save_pool("seed"))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.save_proxy(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.add_proxies_bulk([seeded.proxies[0], "proxy"]))  # type: ignore[list-item]
    refuse(s, ValueError, lambda: s.create_lease(None, "c", 60))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.create_lease(str(seeded.proxies[2].id), "c", 60))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.release_lease(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.release_lease(str(seeded.lease.id)))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: m.release_proxy(None))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: s.find_available_proxy("seed", selector="fastest"))  # type: ignore[arg-type]
    refuse(s, ValueError, lambda: m.acquire("seed", selector=5))  # type: ignore[arg-type]
    held = s.get_lease(str(seeded.lease.id))
    assert held is not None and held.status is LeaseStatus.ACTIVE


@pytest.mark.parametrize("lease", [None, "lease-id"])
def test_renewing_something_that_is_not_a_lease_is_refused(seeded: Seeded, lease: Any) -> None:
    refuse(seeded.storage, ValueError, lambda: seeded.manager.renew_lease(lease, 30))


# ---------------------------------------------------------------------------- asyncio


def test_the_async_storage_refuses_the_same_way(
    make_async_storage: Callable[..., Any], loop: Any, seeded: Seeded
) -> None:
    """One core: the asyncio storage refuses what the sync one does, writing nothing."""
    s = seeded.storage
    facade = AsyncFacade(make_async_storage(), loop)
    bad_proxy = modified(make_proxy(seeded.pool, 9), host="a\nb")
    for expected, call in (
        (
            ValueError,
            lambda: facade.save_pool(ProxyPool.model_construct(id=uuid.uuid4(), name=None)),
        ),
        (ValueError, lambda: facade.find_available_proxy("\ud800")),
        (ValueError, lambda: facade.save_proxy(bad_proxy)),
        (InvalidLeaseError, lambda: facade.create_lease(seeded.proxies[2], "c", math.nan)),
        (ValueError, lambda: facade.find_available_proxy("seed", deep(1000))),
        (ValueError, lambda: facade.release_lease(None)),
        (ProxyNotFoundError, lambda: facade.get_proxy("../")),
        (PoolNotFoundError, lambda: facade.get_pool("{x}")),
        (PharoxError, lambda: facade.delete_proxy("nope")),
    ):
        refuse(s, expected, call)
    assert facade.audit().drift == ()
    assert len(s.list_leases()) == 2
