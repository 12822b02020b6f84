"""What outcomes and targets cost: still one round trip of one FCALL, and nothing while unused.

* A release with an outcome is one FCALL release, as a release without one.
* An acquire with ``target`` is one FCALL acquire; in a pool with no block and no cool-down
  (the pool's ``cool`` field is absent) the scripts run exactly the commands of an acquire
  without a target: a pool that never had an outcome pays nothing for them.
"""

from __future__ import annotations

from typing import Any

import pytest

from pharox_redis import Outcome, RedisProxyManager, RedisStorage

from ...helpers import Recorder
from ...helpers.round_trips import ACQUIRE, RELEASE, SELECTORS, Meter, seed

pytestmark = pytest.mark.real_redis


@SELECTORS
def test_a_target_costs_nothing_in_a_pool_without_outcomes(
    storage: RedisStorage, meter: Meter, selector: Any
) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    manager.release_proxy(manager.acquire_proxy(pool.name, "w", 60, selector=selector))  # type: ignore[arg-type]
    ran = []
    for target in (None, "a.example"):
        with meter.measure() as seen:
            got = manager.acquire(pool.name, "w", 60, selector=selector, target=target)
        assert got is not None and seen.sent == ACQUIRE
        ran.append(seen.in_scripts)
        manager.release_proxy(got)
    assert ran[0] == ran[1]


@pytest.mark.parametrize(
    "outcome",
    [Outcome.ok(12.5), Outcome.failed(), Outcome.blocked("a.example")],
    ids=lambda o: o.kind,
)
def test_a_release_with_an_outcome_is_one_round_trip_of_one_fcall(
    storage: RedisStorage, meter: Meter, outcome: Outcome
) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    held = manager.acquire(pool.name, "w", 60, target="a.example")
    assert held is not None
    recorder = Recorder(storage)
    with meter.measure() as seen:
        manager.release_proxy(held, outcome=outcome)
    assert len(recorder.batches) == 1
    assert seen.sent == RELEASE and seen.stats["fcall"] == 1
    assert set(seen.stats) - set(seen.in_scripts) == {"fcall"}
    found = storage.get_outcome_stats(pool.name)
    assert found is not None
    assert (found.cooling, found.blocked) == (outcome.kind == "failed", outcome.kind == "blocked")
