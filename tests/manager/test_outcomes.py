"""Outcomes through the managers, sync and async, on every deployment.

``tests/storage/test_outcomes.py`` covers what an outcome does to the pool in detail; here,
that each way of reporting one reaches the release script: ``release_proxy(outcome=)``,
``leased.report`` inside a ``with_proxy`` block (left normally or by an error), ``rotate``
and ``acquire``/``with_proxy`` with ``target``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pharox import SelectorStrategy

from pharox_redis import Outcome, OutcomeStats

from ..helpers.managers import seed


def outcome_stats(manager: Any, pool_name: str) -> OutcomeStats:
    found = manager.storage.get_outcome_stats(pool_name)
    assert isinstance(found, OutcomeStats)
    return found


def test_release_with_a_failure_cools_the_proxy_down(manager: Any) -> None:
    pool, _ = seed(manager, 1)
    held = manager.acquire(pool.name, duration_seconds=60)
    assert held is not None
    manager.release_proxy(held, outcome=Outcome.failed())
    found = outcome_stats(manager, pool.name)
    assert (found.cooling, found.stats.available_proxies, found.stats.total_leases) == (1, 0, 0)
    assert manager.acquire(pool.name) is None
    assert manager.storage.audit().clean


def test_a_with_proxy_block_reports_its_outcome_on_leaving(manager: Any) -> None:
    pool, _ = seed(manager, 2, max_concurrency=1)
    with manager.with_proxy(pool.name, duration_seconds=60, target="a.example") as leased:
        assert leased is not None and leased.outcome is None
        leased.report(Outcome.ok(5))
        leased.report(Outcome.blocked("a.example"))  # the last report is sent
        blocked = leased.proxy.id
    assert outcome_stats(manager, pool.name).blocked == 1
    with manager.with_proxy(pool.name, target="a.example") as other:
        assert other is not None and other.proxy.id != blocked
        with manager.with_proxy(pool.name, target="A.Example.") as none:
            assert none is None
    with pytest.raises(RuntimeError):
        with manager.with_proxy(pool.name, selector=SelectorStrategy.LEAST_USED) as failing:
            assert failing is not None
            failing.report(Outcome.failed())
            raise RuntimeError("the request failed")
    found = outcome_stats(manager, pool.name)
    assert (found.cooling, found.blocked, found.stats.total_leases) == (1, 1, 0)
    assert manager.storage.audit().clean


def test_rotate_and_target_skip_what_the_outcomes_ruled_out(manager: Any) -> None:
    pool, proxies = seed(manager, 3)
    held = manager.acquire(pool.name, duration_seconds=60)
    assert held is not None
    rotated = manager.rotate(held, outcome=Outcome.failed(), target="b.example")
    assert rotated is not None and rotated.proxy.id != held.proxy.id
    again = manager.rotate(rotated, outcome=Outcome.blocked("b.example"), target="b.example")
    assert again is not None
    assert again.proxy.id not in {held.proxy.id, rotated.proxy.id}
    manager.release_proxy(again)
    assert manager.acquire(pool.name, target="b.example") is not None  # the third one
    found = outcome_stats(manager, pool.name)
    assert (found.cooling, found.blocked) == (1, 1)
    assert len({p.id for p in proxies}) == 3
