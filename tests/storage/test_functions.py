"""Redis Functions: the scripts as one library (``FCALL``), and the fall back to ``EVALSHA``.

Every backend here (fakeredis, Redis 7, Valkey) has Functions: the storages call ``FCALL``
and load the library themselves. A server without them (fakeredis told it is Redis 6, or a
redis-server whose FCALL is renamed away) and a user whose ACL refuses them
(``tests/security``) get ``EVALSHA``. Either way a Lua error names the file and line of
``lua/`` it comes from.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from pharox import ProxyFilters, ProxyPool

from pharox_redis import (
    AsyncRedisProxyManager,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
    scripts,
)
from pharox_redis.executor import refuses_functions
from pharox_redis.operations.batch import Batch, Command, ScriptCall
from pharox_redis.scripts import (
    GLOBAL_SCRIPTS,
    LIBRARY_LINES,
    POOL_SCRIPTS,
    library,
    lua_dir,
    prelude,
    sources,
)
from pharox_redis.server import RedisServer

from ..conftest import BACKENDS
from ..helpers import AsyncFacade, make_proxy, seed_pool


def lease_cycle(storage: RedisStorage, size: int = 2) -> None:
    """Seed a pool, lease and release every proxy with every selector, audit clean."""
    pool = seed_pool(storage, size, max_concurrency=1)
    manager = RedisProxyManager(storage)
    held = [manager.acquire(pool.name, "w", 30) for _ in range(size)]
    assert all(x is not None for x in held) and manager.acquire(pool.name, "w", 30) is None
    for leased in held:
        assert leased is not None
        manager.release_proxy(leased)
    assert storage.audit().clean


def library_names(client: Any) -> set[str]:
    """Return the names of the libraries a server holds."""
    return {
        (entry[b"library_name"] if isinstance(entry, dict) else entry[1]).decode()
        for entry in client.function_list()
    }


# ------------------------------------------------------------------------- the library


def test_every_script_is_a_function_of_one_library() -> None:
    """Generic over the registry: a script added to scripts.py is a function by itself."""
    lib = library()
    assert re.fullmatch(r"pharox_[0-9a-f]{16}", lib.name)
    assert set(lib.functions) == set(sources()) == {*POOL_SCRIPTS, *GLOBAL_SCRIPTS}
    assert all(name == f"{lib.name}_{script}" for script, name in lib.functions.items())
    assert lib.source.text.startswith(f"#!lua name={lib.name}\n")
    files = [file for file, _ in lib.source.parts]
    assert prelude()[:1] == ["_common"] and {"_pool", "_select"} <= set(prelude())
    for part in prelude():  # the prelude once, not once per script
        assert files.count(f"{part}.lua") == 1
    assert lib.source.text.count("\n") == sum(count for _, count in lib.source.parts)


def test_the_library_is_named_by_its_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another version's code (here one more comment line) loads as another library."""
    ours = library()
    for path in lua_dir().glob("*.lua"):
        shutil.copy(path, tmp_path / path.name)
    release = tmp_path / "release.lua"
    release.write_text("-- another version\n" + release.read_text())
    try:
        with monkeypatch.context() as patched:
            patched.setattr(scripts, "lua_dir", lambda: tmp_path)
            library.cache_clear()
            theirs = library()
    finally:
        library.cache_clear()
    assert theirs.name != ours.name
    assert not set(theirs.functions.values()) & set(ours.functions.values())
    assert library() == ours


def test_the_prelude_reads_no_pool_key_while_the_library_loads() -> None:
    """The K_* locals are set per call; a prelude statement outside a function sees nil.

    A static check of what the library needs from ``_common.lua``, ``_pool.lua`` and
    ``_select.lua``: every line at the top level of a file (not indented, not inside a
    function) that is not a ``local function`` header names no ``K_<FIELD>``.
    """
    for part in prelude():
        depth = 0
        for number, line in enumerate((lua_dir() / f"{part}.lua").read_text().splitlines(), 1):
            code = line.split("--", 1)[0]
            # A helper is not inside a script's function: KEYS and ARGV are not its own.
            assert not re.search(r"\b(?:KEYS|ARGV)\b", code), f"{part}.lua:{number}: {line}"
            if depth == 0 and not code.startswith("local function"):
                assert not re.search(r"\bK_[A-Z]+", code), f"{part}.lua:{number}: {line}"
            opened = len(re.findall(r"\b(?:function|do|then)\b", code))
            depth += opened - len(re.findall(r"\bend\b", code))
            depth -= len(re.findall(r"\belseif\b", code))  # 'elseif ... then' opens nothing


# ----------------------------------------------------------------- calling, per backend


def test_storages_call_functions_and_load_the_library(
    backend: str, make_client: Callable[..., Any], make_storage: Callable[..., RedisStorage]
) -> None:
    admin = make_client()
    admin.function_flush()
    storage = make_storage()
    lease_cycle(storage)
    assert storage.executor.library is not None
    assert library().name in library_names(admin)


def test_a_storage_told_not_to_uses_evalsha(
    backend: str, make_client: Callable[..., Any], make_storage: Callable[..., RedisStorage]
) -> None:
    admin = make_client()
    admin.function_flush()
    storage = make_storage(functions=False)
    lease_cycle(storage)
    assert storage.executor.library is None
    assert library().name not in library_names(admin)


def test_another_versions_library_is_left_alone(
    backend: str, make_client: Callable[..., Any], make_storage: Callable[..., RedisStorage]
) -> None:
    """Two versions of pharox-redis on one server: each loads and calls its own library."""
    admin = make_client()
    lib = library()
    other = "pharox_0123456789abcdef"
    admin.function_load(lib.source.text.replace(lib.name, other), replace=True)
    try:
        lease_cycle(make_storage())
        assert {lib.name, other} <= library_names(admin)
    finally:
        admin.function_delete(other)


# fakeredis's cjson.decode raises Python's JSONDecodeError there, not a Lua error.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "fakeredis"])
@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_a_lua_error_names_its_file_and_line(
    backend: str, make_storage: Callable[..., RedisStorage], functions: bool
) -> None:
    """A proxy whose stored state is not JSON: a filtered acquire fails where it decodes it.

    The filter is tested in ``_select.lua``, a prelude file. With FCALL the line Redis names
    is one of the whole library (prelude, then every script); the error names the line of
    ``_select.lua`` all the same.
    """
    storage = make_storage(functions=functions)
    pool = seed_pool(storage, 1)
    (proxy,) = storage.list_proxies(str(pool.id))
    manager = RedisProxyManager(storage)
    first = manager.acquire(pool.name, "w", 30)  # builds the selector's set
    assert first is not None
    manager.release_proxy(first)
    state = storage.context.keys.pool(pool.id).state
    storage.client.hset(state, str(proxy.id), "{")
    lines = (lua_dir() / "_select.lua").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if "matches(filter, cjson.decode(" in text)
    with pytest.raises(RedisStorageError) as caught:
        manager.acquire(pool.name, "w", 30, ProxyFilters(country="AR"))
    message = str(caught.value)
    assert f"_select.lua:{line}:" in message, message
    assert "user_function" not in message and "user_script" not in message, message


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_an_atomic_batch_loads_what_it_lacks_inside_its_transaction(
    backend: str,
    make_client: Callable[..., Any],
    make_storage: Callable[..., RedisStorage],
    functions: bool,
) -> None:
    """MULTI; FUNCTION LOAD (SCRIPT LOAD of each script); the calls; EXEC."""
    admin = make_client()
    storage = make_storage(functions=functions)
    keys = storage.context.keys.pool(uuid.uuid4())  # no such pool: every script says so
    calls = (
        ScriptCall("release", keys, ("no-lease", "1000")),
        ScriptCall("reclaim", keys, ("1000", "8")),
        Command(("HGET", keys.meta, "name")),
    )
    admin.function_flush() if functions else admin.script_flush()
    first, second, name = storage.executor.execute(Batch(calls, atomic=True))
    assert first[0] == second[0] == b"nopool" and name is None
    assert (storage.executor.library is not None) is functions


def test_async_storages_call_functions_too(
    backend: str,
    make_client: Callable[..., Any],
    make_async_storage: Callable[..., Any],
    loop: Any,
) -> None:
    make_client().function_flush()
    astorage = make_async_storage()
    facade = AsyncFacade(astorage, loop)
    pool = ProxyPool(name="async")
    facade.save_pool(pool)
    facade.save_proxy(make_proxy(pool))
    manager = AsyncRedisProxyManager(astorage)
    leased = loop.run_until_complete(manager.acquire("async", "w", 30))
    assert leased is not None
    loop.run_until_complete(manager.release_proxy(leased))
    assert astorage.executor.library is not None


# ------------------------------------------------------------------------ falling back


def test_fakeredis_as_redis_6_falls_back_to_evalsha() -> None:
    """fakeredis told it is Redis 6 does not know FCALL: the storage falls back, for good."""
    client = fakeredis.FakeRedis(version=6)
    storage = RedisStorage(client, prefix="old")
    lease_cycle(storage)
    assert storage.executor.library is None


def test_fakeredis_as_redis_6_falls_back_with_asyncio(loop: Any) -> None:
    from pharox_redis import AsyncRedisStorage

    client = fakeredis.FakeAsyncRedis(version=6)
    astorage = AsyncRedisStorage(client, prefix="old")
    facade = AsyncFacade(astorage, loop)
    pool = ProxyPool(name="old")
    facade.save_pool(pool)
    facade.save_proxy(make_proxy(pool))
    leased = loop.run_until_complete(AsyncRedisProxyManager(astorage).acquire("old", "w", 30))
    assert leased is not None
    assert astorage.executor.library is None
    loop.run_until_complete(client.aclose())


@pytest.mark.real_redis
def test_a_server_without_fcall_gets_evalsha(opened: list[RedisStorage]) -> None:
    """A redis-server whose FCALL is renamed away answers as Redis 6 does: unknown command."""
    with RedisServer(extra=("--rename-command", "FCALL", "")) as server:
        storage = RedisStorage.from_url(server.url, prefix="old")
        opened.append(storage)
        lease_cycle(storage)
        assert storage.executor.library is None
        stats = storage.client.info("commandstats")
        assert "cmdstat_evalsha" in stats and "cmdstat_fcall" not in stats


@pytest.mark.real_redis
def test_threads_sharing_a_storage_fall_back_together(opened: list[RedisStorage]) -> None:
    """Threads whose first FCALLs are all on their way when the first refusal comes back:
    each is sent again with EVALSHA, none fails."""
    threads = 8
    with RedisServer(extra=("--rename-command", "FCALL", "")) as server:
        seeder = RedisStorage.from_url(server.url, prefix="old", functions=False)
        opened.append(seeder)
        pool = seed_pool(seeder, threads, max_concurrency=1)
        storage = RedisStorage.from_url(server.url, prefix="old")
        opened.append(storage)
        manager = RedisProxyManager(storage)
        start = threading.Barrier(threads)
        errors: list[BaseException] = []

        def lease() -> None:
            start.wait()
            try:
                for _ in range(5):
                    leased = manager.acquire(pool.name, "w", 30)
                    assert leased is not None
                    manager.release_proxy(leased)
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=lease) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert errors == [] and storage.executor.library is None
        assert storage.audit().clean


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ("unknown command 'FCALL', with args beginning with: 'x'", True),
        ("unknown command `FCALL`, with args beginning with: ", True),  # Redis 6.2
        ("unknown command 'FUNCTION', with args beginning with: 'LOAD'", True),
        ("NOPERM this user has no permissions to run the 'fcall' command", True),
        ("NOPERM User u has no permissions to run the 'function|load' command", True),
        ("Function not found", False),
        ("WRONGTYPE Operation script: pharox_x_acquire, on @user_function:12.", False),
        (
            "NOPERM The user executing the script can't run this command or subcommand "
            "script: pharox_x_acquire, on @user_function:7.",
            False,
        ),
    ],
)
def test_what_says_functions_cannot_be_used(message: str, refused: bool) -> None:
    error: redis.ResponseError
    if message.startswith("NOPERM"):
        error = redis.exceptions.NoPermissionError(message.removeprefix("NOPERM "))
    else:
        error = redis.ResponseError(message)
    assert refuses_functions(error) is refused
    assert LIBRARY_LINES  # the generated lines have a name of their own in errors
