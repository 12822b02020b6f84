"""Lost replies of rotate, acquire_many and release_many: one lease made, one release done.

The same relay as ``test_reply_lost.py`` (whose fixtures this module uses) drops the reply to
the next FCALL of a named script and closes the connection. The server ran the script; the
manager (``retries``) or redis-py's ``Retry`` sends it again with the same lease ids, and the
server answers with what the first run made. The seeded proxy has no maximum, so a second
lease (or a release done twice) would show in its lease count.
"""

from __future__ import annotations

import asyncio

import pytest

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    LeasedProxy,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.operations.batch import ScriptCall

from ..helpers import Recorder
from ..helpers.relay import Relay
from . import test_reply_lost as lost
from .test_reply_lost import (
    Seeded,
    View,
    cut_replies,
    from_url_storage,
    no_retry_async_storage,
    no_retry_storage,
    view,
    warm,
)

# The fixtures of test_reply_lost.py: a fresh server per test, the relay, a direct storage.
server, relay, direct, seeded = lost.server, lost.relay, lost.direct, lost.seeded

pytestmark = pytest.mark.real_redis


def sent_ids(recorder: Recorder, script: str, position: int) -> list[str]:
    """The lease id argument at ``position`` of every call of ``script`` sent."""
    calls = [c for b in recorder.batches for c in b.calls]
    return [str(c.args[position]) for c in calls if isinstance(c, ScriptCall) and c.name == script]


def holding_two(manager: RedisProxyManager, seeded: Seeded) -> tuple[LeasedProxy, LeasedProxy]:
    held = manager.acquire(seeded.pool.name, "w", 60)
    kept = manager.acquire(seeded.pool.name, "w", 60)
    assert held is not None and kept is not None
    return held, kept


@pytest.mark.parametrize("client", ["manager-resends", "redis-py-resends"])
def test_a_lost_rotate_is_resent_and_makes_one_lease_and_one_release(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage], client: str
) -> None:
    if client == "manager-resends":
        storage, retries, cuts = no_retry_storage(relay.url, opened), 2, 2
    else:
        storage, retries, cuts = from_url_storage(relay.url, opened), 0, 1
    warm(storage, seeded)
    manager = RedisProxyManager(storage, retries=retries)
    held, kept = holding_two(manager, seeded)
    recorder = Recorder(storage)
    cut_replies(relay, "rotate", times=cuts)
    nxt = manager.rotate(held, "w", 60)
    assert relay.cuts == cuts
    ids = sent_ids(recorder, "rotate", 6)
    assert len(ids) == (cuts + 1 if retries else 1) and len(set(ids)) == 1
    assert nxt is not None and str(nxt.lease.id) == ids[0]
    assert held.lease.released_at is not None and not held.lost
    # kept and the new lease: two active, the rotated one released once
    assert view(direct, seeded) == View(
        records=3, active=2, proxy_leases=2, total_leases=2, leased_proxies=1
    )
    manager.release_many([nxt, kept])
    assert view(direct, seeded).active == 0


def test_a_lost_rotate_not_resent_raises_with_the_new_lease_id(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    storage = no_retry_storage(relay.url, opened)
    warm(storage, seeded)
    manager = RedisProxyManager(storage, retries=0)
    held, kept = holding_two(manager, seeded)
    cut_replies(relay, "rotate")
    with pytest.raises(RedisStorageError) as info:
        manager.rotate(held, "w", 60)
    orphan = direct.get_lease(str(info.value.lease_id))
    assert orphan is not None and orphan.proxy_id == seeded.proxy.id  # the server made it
    released = direct.get_lease(str(held.lease.id))
    assert released is not None and released.released_at is not None  # and released
    assert view(direct, seeded).proxy_leases == 2
    manager.release_many([orphan, kept])
    assert view(direct, seeded).proxy_leases == 0


def test_a_lost_acquire_many_is_resent_and_makes_its_leases_once(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    storage = no_retry_storage(relay.url, opened)
    warm(storage, seeded)
    manager = RedisProxyManager(storage)
    first = manager.acquire(seeded.pool.name, "w", 60)  # the pool's schedule is known now
    assert first is not None
    manager.release_proxy(first)
    recorder = Recorder(storage)
    cut_replies(relay, "acquire_many", times=2)
    got = manager.acquire_many(seeded.pool.name, 3, "w", 60, distinct=False)
    assert relay.cuts == 2
    assert len(got) == 3 and {x.proxy.id for x in got} == {seeded.proxy.id}
    firsts = sent_ids(recorder, "acquire_many", 15)
    assert len(firsts) == 3 and len(set(firsts)) == 1 and str(got[0].lease.id) == firsts[0]
    assert view(direct, seeded).proxy_leases == 3  # not 6 or 9
    cut_replies(relay, "release_many")
    manager.release_many(got)
    assert relay.cuts == 3 and all(x.lease.released_at is not None for x in got)
    after = view(direct, seeded)
    assert (after.active, after.proxy_leases, after.total_leases) == (0, 0, 0)


def test_a_lost_release_many_is_idempotent(
    relay: Relay, direct: RedisStorage, seeded: Seeded, opened: list[RedisStorage]
) -> None:
    storage = from_url_storage(relay.url, opened)
    manager = RedisProxyManager(storage, retries=0)  # redis-py re-sends
    got = manager.acquire_many(seeded.pool.name, 2, "w", 60, distinct=False)
    other = manager.acquire(seeded.pool.name, "w", 60)
    assert other is not None and view(direct, seeded).proxy_leases == 3
    cut_replies(relay, "release_many")
    manager.release_many(got)
    assert relay.cuts == 1 and view(direct, seeded).proxy_leases == 1  # other's slot kept
    manager.release_many(got)
    assert view(direct, seeded).proxy_leases == 1
    manager.release_proxy(other)


def test_async_lost_rotate_and_batch_are_resent(
    relay: Relay, direct: RedisStorage, seeded: Seeded
) -> None:
    storage: AsyncRedisStorage = no_retry_async_storage(relay.url)

    async def run() -> None:
        try:
            manager = AsyncRedisProxyManager(storage)
            held = await manager.acquire(seeded.pool.name, "w", 60)
            assert held is not None
            cut_replies(relay, "rotate")
            nxt = await manager.rotate(held, "w", 60)
            assert nxt is not None and held.lease.released_at is not None
            cut_replies(relay, "acquire_many")
            more = await manager.acquire_many(seeded.pool.name, 2, "w", 60, distinct=False)
            assert len(more) == 2
            assert view(direct, seeded).proxy_leases == 3
            cut_replies(relay, "release_many")
            await manager.release_many([nxt, *more])
        finally:
            await storage.aclose()

    asyncio.run(run())
    assert relay.cuts == 3
    assert view(direct, seeded).proxy_leases == 0
