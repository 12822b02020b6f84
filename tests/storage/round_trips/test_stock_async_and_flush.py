"""What pharox's stock ProxyManager, the asyncio manager and a lost script cache cost.

* pharox's stock ProxyManager on RedisStorage: acquire 4 round trips (FCALL due, FCALL
  find, FCALL lease + FCALL schedule, FCALL stats), release 2 (FCALL release, FCALL stats),
  cleanup with nothing expired 1 (FCALL due).
* AsyncRedisProxyManager: acquire and release 1 round trip each, as the sync one.
* After FUNCTION FLUSH (SCRIPT FLUSH without Functions) the first acquire is still one batch
  for the Recorder, but the server sees the pipeline twice: "Function not found" (NOSCRIPT),
  then each script call again inside MULTI with a FUNCTION LOAD of the library (SCRIPT LOAD
  of its script).
* Without callbacks, no payload (nor its start time, nor pool stats) is built.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest
from pharox import AcquireEventPayload, ProxyManager, ReleaseEventPayload, SelectorStrategy

import pharox_redis.codec
import pharox_redis.flows
from pharox_redis import AsyncRedisProxyManager, AsyncRedisStorage, RedisProxyManager, RedisStorage
from pharox_redis.server import RedisServer

from ...helpers import Recorder
from ...helpers.round_trips import (
    ACQUIRE,
    RELEASE,
    SELECTORS,
    Meter,
    new_storage,
    seed,
    stats_fields,
)

pytestmark = pytest.mark.real_redis


# ---------------------------------------------------------------------- stock ProxyManager


@pytest.mark.parametrize("consumer", ["w", None], ids=["named", "default"])
def test_stock_manager_round_trips(
    storage: RedisStorage, meter: Meter, consumer: Optional[str]
) -> None:
    pool = seed(storage)
    manager = ProxyManager(storage)
    manager.acquire_proxy(pool.name, consumer, 60)  # warm-up
    recorder = Recorder(storage)
    with meter.measure() as seen:
        lease = manager.acquire_proxy(pool.name, consumer, 60)
    assert lease is not None
    assert len(recorder.batches) == 4  # cleanup, find, create (+ hint), stats
    assert seen.sent == [
        "FCALL due",
        "FCALL find",
        "FCALL lease",
        "FCALL schedule",
        "FCALL stats",
    ]
    recorder.reset()
    with meter.measure() as seen:
        manager.release_proxy(lease)
    assert len(recorder.batches) == 2
    assert seen.sent == ["FCALL release", "FCALL stats"]
    recorder.reset()
    with meter.measure() as seen:
        assert manager.cleanup_expired_leases() == 0
    assert len(recorder.batches) == 1 and len(recorder.calls) == 1
    assert seen.sent == ["FCALL due"]


@SELECTORS
def test_stock_manager_acquire_is_at_most_four_round_trips(
    storage: RedisStorage, selector: Any
) -> None:
    pool = seed(storage)
    manager = ProxyManager(storage)
    manager.acquire_proxy(pool.name, "w", 60, selector=selector)
    recorder = Recorder(storage)
    for _ in range(3):
        recorder.reset()
        assert manager.acquire_proxy(pool.name, "w", 60, selector=selector) is not None
        assert len(recorder.batches) <= 4


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_first_acquire_after_flush(
    server: RedisServer, prefix: str, opened: list[RedisStorage], meter: Meter, functions: bool
) -> None:
    storage = new_storage(server, prefix, opened, functions=functions)
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    manager.acquire_proxy(pool.name, "w", 60)  # warm-up
    if functions:
        meter.stats_client.function_flush()
        verb, load = "FCALL", "FUNCTION LOAD"
    else:
        meter.stats_client.script_flush()
        verb, load = "EVALSHA", "SCRIPT LOAD"
    recorder = Recorder(storage)
    try:
        with meter.measure() as seen:
            assert manager.acquire_proxy(pool.name, "w", 60) is not None
    finally:
        meter.load_scripts()
    # One batch for the Recorder, two round trips on the wire: the pipeline answered
    # "Function not found" (NOSCRIPT), then went again with the library (each script)
    # loaded in one transaction with its call, so no flush can land between the load and
    # the call.
    assert len(recorder.batches) == 1
    assert seen.sent == [f"{verb} acquire", "MULTI", load, f"{verb} acquire", "EXEC"]
    recorder.reset()
    with meter.measure() as seen:
        assert manager.acquire_proxy(pool.name, "w", 60) is not None
    assert seen.sent == [f"{verb} acquire"]


# ---------------------------------------------------------------------- asyncio


def test_async_manager_acquire_and_release_are_one_round_trip(
    server: RedisServer, prefix: str, storage: RedisStorage, meter: Meter
) -> None:
    pool = seed(storage)
    loop = asyncio.new_event_loop()
    astorage = AsyncRedisStorage.from_url(server.url, prefix=prefix)
    try:
        manager = AsyncRedisProxyManager(astorage)
        run = loop.run_until_complete
        assert run(manager.acquire_proxy(pool.name, "w", 60)) is not None  # warm-up
        recorder = Recorder(astorage)
        for selector in SelectorStrategy:
            recorder.batches.clear()
            with meter.measure() as seen:
                leased = run(manager.acquire(pool.name, "w", 60, selector=selector))
            assert leased is not None
            assert len(recorder.batches) == 1 and seen.sent == ACQUIRE
            assert set(seen.stats) - set(seen.in_scripts) == {"fcall"}
            recorder.batches.clear()
            with meter.measure() as seen:
                run(manager.release_proxy(leased))
            assert len(recorder.batches) == 1 and seen.sent == RELEASE

        # With callbacks (plain and coroutine): still one round trip each.
        acquired: list[AcquireEventPayload] = []
        released: list[ReleaseEventPayload] = []

        async def on_release(payload: ReleaseEventPayload) -> None:
            released.append(payload)

        manager.register_acquire_callback(acquired.append)
        manager.register_release_callback(on_release)
        recorder.batches.clear()
        with meter.measure() as seen:
            lease = run(manager.acquire_proxy(pool.name, "w", 60))
        assert lease is not None and len(recorder.batches) == 1 and seen.sent == ACQUIRE
        assert stats_fields(acquired[-1].pool_stats) == stats_fields(
            storage.get_pool_stats(pool.name)
        )
        recorder.batches.clear()
        with meter.measure() as seen:
            run(manager.release_proxy(lease))
        assert len(recorder.batches) == 1 and seen.sent == RELEASE
        assert stats_fields(released[-1].pool_stats) == stats_fields(
            storage.get_pool_stats(pool.name)
        )
        assert stats_fields(released[-1].pool_stats)["total_leases"] == 1  # the warm-up's
    finally:
        loop.run_until_complete(astorage.aclose())
        loop.close()


# ---------------------------------------------------------------------- nothing built


class Built(AssertionError):
    """Raised by the stand-ins: something was built for a callback nobody registered."""


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise Built("built without a callback")


@pytest.fixture
def nothing_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pharox_redis.flows, "acquire_payload", _boom)
    monkeypatch.setattr(pharox_redis.flows, "release_payload", _boom)
    monkeypatch.setattr(pharox_redis.codec, "stats_snapshot", _boom)
    # Not even the start time of an acquire is taken.
    monkeypatch.setattr(pharox_redis.flows, "now_utc", _boom)


@pytest.mark.usefixtures("nothing_built")
def test_without_callbacks_no_payload_is_built(server: RedisServer, storage: RedisStorage) -> None:
    pool = seed(storage)
    manager = RedisProxyManager(storage)
    manager.release_proxy(manager.acquire(pool.name, "w", 60))  # type: ignore[arg-type]
    recorder = Recorder(storage)
    leased = manager.acquire(pool.name, "w", 60)
    assert leased is not None and len(recorder.batches) == 1
    recorder.reset()
    manager.release_proxy(leased)
    assert leased.lease.released_at is not None and len(recorder.batches) == 1

    async def main() -> None:
        astorage = AsyncRedisStorage.from_url(server.url, prefix=storage.context.keys.prefix)
        try:
            amanager = AsyncRedisProxyManager(astorage)
            aleased = await amanager.acquire(pool.name, "w", 60)
            assert aleased is not None
            await amanager.release_proxy(aleased)
            assert aleased.lease.released_at is not None
        finally:
            await astorage.aclose()

    asyncio.run(main())
    # The stand-ins are live: a registered callback does reach them.
    manager.register_acquire_callback(lambda payload: None)
    with pytest.raises(Built):
        manager.acquire(pool.name, "w", 60)
