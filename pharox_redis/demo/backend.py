"""The Redis the demo talks to: ``--url``/``REDIS_URL``, a private redis-server or fakeredis."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Optional

from ..connect import redact
from ..server import RedisServer, redis_server_binary
from ..storage import RedisStorage
from .pool import POOL_NAME

FAKEREDIS_HINT = (
    "pharox-redis demo: no REDIS_URL, no redis-server on PATH, and no fakeredis[lua].\n"
    "Either install a server (e.g. `apt-get install redis-server`), point REDIS_URL at one,\n"
    "or install the fake: `pip install 'fakeredis[lua]'` (or `pip install -e '.[test]'`)."
)


class BadUrlError(ValueError):
    """``--url`` or ``REDIS_URL`` is not a URL ``RedisStorage.from_url`` understands."""


@dataclass
class Backend:
    """The Redis the demo talks to.

    Parameters
    ----------
    storage:
        The storage under test.
    description:
        One line saying what the backend is and why it was chosen.
    shared:
        True for a server the demo does not own: everything written must be deleted.

    """

    storage: RedisStorage
    description: str
    shared: bool


def server_version(client: Any) -> str:
    """Return the ``redis_version`` a client's server reports (this checks the connection).

    Parameters
    ----------
    client:
        A redis-py (or fakeredis) client.

    Returns
    -------
    str
        The version string, ``"?"`` when the server does not say.

    Raises
    ------
    redis.RedisError
        When the server cannot be reached.

    """
    return str(client.info("server").get("redis_version", "?"))


@contextmanager
def open_backend(url: Optional[str], force_fake: bool, why_url: str) -> Iterator[Backend]:
    """Choose, start and finally tear down the backend.

    Parameters
    ----------
    url:
        An existing server's URL, or None.
    force_fake:
        Use fakeredis even when a server is available.
    why_url:
        Where ``url`` came from, for the backend line.

    Yields
    ------
    Backend
        The storage and a description of it.

    Raises
    ------
    ModuleNotFoundError
        When fakeredis is needed but not installed.
    BadUrlError
        When ``url`` is not a Redis URL.

    """
    with ExitStack() as stack:
        if url is not None and not force_fake:
            prefix = f"pharox-demo-{uuid.uuid4().hex[:12]}"
            try:
                storage = RedisStorage.from_url(url, prefix=prefix)
            except ValueError as exc:
                raise BadUrlError(str(exc)) from None
            stack.callback(storage.client.close)
            version = server_version(storage.client)
            yield Backend(
                storage,
                f"redis {version} at {redact(url)} ({why_url}; "
                f"prefix {prefix!r}, removed at the end)",
                shared=True,
            )
            return
        if not force_fake and redis_server_binary() is not None:
            server = stack.enter_context(RedisServer())
            storage = RedisStorage.from_url(server.url, prefix="pharox-demo")
            stack.callback(storage.client.close)
            version = server_version(storage.client)
            yield Backend(
                storage,
                f"private redis-server {version} at {server.url} "
                "(REDIS_URL not set; removed on exit)",
                shared=False,
            )
            return
        import fakeredis

        if importlib.util.find_spec("lupa") is None:  # fakeredis runs Lua scripts with lupa
            raise ModuleNotFoundError("fakeredis needs lupa for EVALSHA", name="fakeredis")
        client = fakeredis.FakeRedis()
        stack.callback(client.close)
        reason = "--fakeredis given" if force_fake else "REDIS_URL not set, no redis-server on PATH"
        yield Backend(
            RedisStorage(client, prefix="pharox-demo"),
            f"fakeredis {fakeredis.__version__}, in-process, for demos and tests only ({reason})",
            shared=False,
        )


def remove_namespace(storage: RedisStorage) -> int:
    """Delete the demo pool, then any key still under the demo's prefix.

    Parameters
    ----------
    storage:
        The demo's storage (with its unique prefix).

    Returns
    -------
    int
        How many keys were left over after ``delete_pool`` and removed here.

    """
    pool_ids = [str(p.id) for p in storage.list_pools() if p.name == POOL_NAME]
    for pool_id in pool_ids:
        storage.delete_pool(pool_id)
    # delete_pool keeps the prefix-wide consumer registry; remove what is left of *our*
    # prefix (unique to this run) key by key. Never FLUSHDB on a server we do not own.
    pattern = f"{storage.context.keys.prefix}:*"
    leftovers = list(storage.client.scan_iter(match=pattern, count=1000))
    if leftovers:
        storage.client.unlink(*leftovers)
    return len(leftovers)
