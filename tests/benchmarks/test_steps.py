"""The rotate and batch steps of the harness, on a stand-in manager.

``RedisProxyManager.rotate``, ``acquire_many`` and ``release_many`` are built on other
branches; until they are merged the harness reports them as not available. These tests pin
down how the harness calls them, so the sections run as they are once the methods exist:
``manager.rotate(leased)``, ``manager.acquire_many(pool_name, 10)`` and
``manager.release_many(leases)``. They also check the ``INFO commandstats`` arithmetic.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from benchmarks import commandstats, worker_side
from benchmarks.commandstats import Work, difference
from pharox_redis import RedisProxyManager


class StandIn:
    """Records the calls the harness makes; hands out numbered leases."""

    def __init__(self, free: int = 100) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.free = free
        self.next = 0

    def _lease(self) -> Optional[str]:
        if self.free <= 0:
            return None
        self.free -= 1
        self.next += 1
        return f"lease-{self.next}"

    def acquire(self, pool_name: str, consumer_name: Optional[str] = None, **kw: Any) -> Any:
        self.calls.append(("acquire", pool_name))
        return self._lease()

    def rotate(self, leased: Any) -> Any:
        self.calls.append(("rotate", leased))
        self.free += 1
        return self._lease()

    def acquire_many(self, pool_name: str, k: int) -> list[Any]:
        self.calls.append(("acquire_many", pool_name, k))
        return [lease for lease in (self._lease() for _ in range(k)) if lease is not None]

    def release_many(self, leases: list[Any]) -> None:
        self.calls.append(("release_many", list(leases)))
        self.free += len(leases)

    def release_proxy(self, leased: Any) -> None:
        self.calls.append(("release_proxy", leased))
        self.free += 1


def test_rotation_holds_one_lease_and_rotates_it() -> None:
    manager = StandIn()
    rotation = worker_side.Rotation(manager, "worker-0")  # type: ignore[arg-type]
    assert [rotation.step() for _ in range(3)] == [1, 1, 1]
    rotation.close()
    assert manager.calls == [
        ("acquire", worker_side.POOL_NAME),
        ("rotate", "lease-1"),
        ("rotate", "lease-2"),
        ("release_proxy", "lease-3"),
    ]


def test_rotation_acquires_again_after_a_miss() -> None:
    manager = StandIn(free=0)
    rotation = worker_side.Rotation(manager, "worker-0")  # type: ignore[arg-type]
    assert rotation.step() == 0
    manager.free = 1
    assert rotation.step() == 1
    assert [call[0] for call in manager.calls] == ["acquire", "acquire"]


def test_rotation_starts_afresh_after_an_exception() -> None:
    manager = StandIn()
    rotation = worker_side.Rotation(manager, "worker-0")  # type: ignore[arg-type]
    rotation.step()

    def lost(leased: Any) -> Any:
        raise RuntimeError("lease lost")

    manager.rotate = lost  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        rotation.step()
    assert rotation.step() == 1
    assert [call[0] for call in manager.calls] == ["acquire", "acquire"]


def test_batch_leases_ten_and_releases_them_together() -> None:
    manager = StandIn(free=12)
    assert worker_side._batch(manager) == 10  # type: ignore[arg-type]
    assert manager.calls[0] == ("acquire_many", worker_side.POOL_NAME, 10)
    assert manager.calls[1] == ("release_many", [f"lease-{n}" for n in range(1, 11)])
    manager.free = 0
    assert worker_side._batch(manager) == 0  # type: ignore[arg-type]
    assert manager.calls[-1][0] == "acquire_many"  # nothing to release


def test_cost_operations_call_the_same_methods() -> None:
    manager = StandIn()
    rotate, done = commandstats.operation(manager, "rotate", None)  # type: ignore[arg-type]
    assert rotate() == 1
    done()
    assert [c[0] for c in manager.calls] == ["acquire", "rotate", "release_proxy"]
    batch, _ = commandstats.operation(manager, "batch", None)  # type: ignore[arg-type]
    assert batch() == 10
    assert manager.calls[-2] == ("acquire_many", commandstats.POOL, 10)


@pytest.mark.parametrize("kind", ["rotate", "batch"])
def test_unavailable_until_the_manager_has_the_methods(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {"rotate": ["rotate"], "batch": ["acquire_many", "release_many"]}[kind]
    for name in names:
        monkeypatch.delattr(RedisProxyManager, name, raising=False)
    assert "not available in this build" in (worker_side.kind_available(kind) or "")
    for name in names:
        monkeypatch.setattr(RedisProxyManager, name, lambda self, *a: None, raising=False)
    assert worker_side.kind_available(kind) is None
    assert worker_side.kind_available("fast") is None


def test_commandstats_counts_redis_calls_and_script_time() -> None:
    before = {"evalsha": (10, 1_000), "hget": (50, 90), "info": (3, 30)}
    after = {
        "evalsha": (30, 5_000),  # 20 script calls, 4,000 us (their commands included)
        "hget": (150, 290),  # 100 calls made by the scripts
        "zadd": (40, 80),  # a command that first ran in the window
        "info": (5, 50),  # the snapshots themselves: not redis.calls
        "script|load": (1, 10),
        "multi": (1, 1),
    }
    work = difference(before, after, units=10)
    assert (work.calls, work.script_runs, work.script_usec) == (140, 20, 4_000)
    assert work.by_command == {"hget": 100, "zadd": 40}
    assert (work.calls_per_unit, work.us_per_unit, work.round_trips_per_unit) == (14, 400, 2)
    total = work.add(Work(units=10, calls=60, script_runs=20, script_usec=2_000))
    assert (total.calls_per_unit, total.us_per_unit) == (10, 300)
