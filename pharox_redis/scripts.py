"""The Lua scripts shipped in ``lua/``: their sources, and where a line of one comes from.

Every script starts with ``lua/_common.lua`` (clock and integer helpers). A pool script then
gets one line binding the pool's keys to locals named after :class:`~pharox_redis.keys.PoolKeys`
(their one definition), ``lua/_pool.lua``, ``lua/_outcome.lua`` (outcomes and cool-downs),
``lua/_select.lua`` (selector walks and filters) and ``lua/_wait.lua`` (the wait queue: any
pool script may free a slot, and its hand-off checks the waiter's filter and target), and for
those that keep a pool's address index (``save_proxies``, ``delete_proxy``, ``audit``)
``lua/_address.lua``, before its own body. Sources are read once per process; each executor
registers them with its own client, so no script state lives in a class or a module global.

All of them also make one function library (:func:`library`, ``FUNCTION LOAD`` then
``FCALL``, Redis 7+ and Valkey): the prelude once, then each script's body as a function.
Executors use it where the server has Functions and fall back to the single scripts
(``EVALSHA``) where it does not.

Because of what comes first, a Lua error names a line of the whole source (or library);
:meth:`ScriptSource.explain` turns it back into the file and line it was written at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from hashlib import sha1
from importlib import resources
from pathlib import Path

from .keys import PoolKeys

SELECT_SCRIPTS = ("find", "acquire", "rotate", "acquire_many")
ADDRESS_SCRIPTS = ("save_proxies", "delete_proxy", "audit")  # they keep the address index
POOL_SCRIPTS = (
    *SELECT_SCRIPTS,
    "lease",
    "leave_queue",
    "release",
    "release_many",
    "reclaim",
    "renew",
    "save_proxies",
    "delete_proxy",
    "health",
    "audit",
    "stats",
)
GLOBAL_SCRIPTS = ("register_pool", "unregister_pool", "schedule", "due")
KEY_BINDING = "keys.py (PoolKeys)"  # what the generated key line is called in error messages
LIBRARY_LINES = "scripts.py (library)"  # what the library's generated lines are called

# Where Redis names a line of a script (``user_script:N``) or of a library's function
# (``user_function:N``), and where fakeredis names one (``[string "<python>"]:N``).
_LINE = re.compile(r'(?:@?user_(?:script|function)|\[string "<python>"\]):(\d+|\?)')


@dataclass(frozen=True)
class ScriptSource:
    """One script's complete source and the files it was put together from.

    Attributes
    ----------
    name:
        The script's name (its file in ``lua/`` without ``.lua``).
    text:
        The source sent to Redis.
    parts:
        ``(file name, number of lines)`` of each piece, in order.

    """

    name: str
    text: str
    parts: tuple[tuple[str, int], ...]

    @cached_property
    def sha(self) -> str:
        """Return the SHA1 Redis knows the script by."""
        return sha1(self.text.encode(), usedforsecurity=False).hexdigest()

    def locate(self, line: int) -> str:
        """Return ``file:line`` for a line of the whole source (1-based)."""
        first = 1
        for file, count in self.parts:
            if line < first + count:
                return f"{file}:{line - first + 1}"
            first += count
        return f"{self.name}.lua:{line}"

    def explain(self, message: str) -> str:
        """Return a Redis error message with every script line named by its own file."""

        def name(match: re.Match[str]) -> str:
            where = match.group(1)
            return self.locate(int(where)) if where.isdigit() else f"{self.name}.lua"

        return _LINE.sub(name, message)


def lua_dir() -> Path:
    """Return the folder holding the ``.lua`` files.

    In a wheel they are package data (``pharox_redis/lua``); in a source checkout they are
    the top-level ``lua/`` folder next to the package.
    """
    packaged = Path(str(resources.files("pharox_redis"))) / "lua"
    if (packaged / "_pool.lua").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"


def key_names() -> str:
    """Return the ``K_<FIELD>`` names of a pool's keys, comma-separated (PoolKeys order)."""
    return ", ".join(f"K_{field.upper()}" for field in PoolKeys._fields)


def key_binding() -> str:
    """Return the Lua line binding a pool script's KEYS to ``K_<FIELD>`` locals."""
    values = ", ".join(f"KEYS[{i}]" for i in range(1, len(PoolKeys._fields) + 1))
    return f"local {key_names()} = {values}\n"


def _read(name: str) -> tuple[str, str]:
    text = (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")
    if not text.endswith("\n"):
        raise ValueError(f"{name}.lua must end with a newline")
    return f"{name}.lua", text


@lru_cache(maxsize=1)
def sources() -> dict[str, ScriptSource]:
    """Return every script's source by name."""
    out = {}
    for name in (*POOL_SCRIPTS, *GLOBAL_SCRIPTS):
        pieces = [_read("_common")]
        if name in POOL_SCRIPTS:
            pieces += [(KEY_BINDING, key_binding()), _read("_pool"), _read("_outcome")]
            pieces += [_read("_select"), _read("_wait")]
        if name in ADDRESS_SCRIPTS:
            pieces.append(_read("_address"))
        pieces.append(_read(name))
        out[name] = _joined(name, pieces)
    return out


def _joined(name: str, pieces: list[tuple[str, str]]) -> ScriptSource:
    return ScriptSource(
        name,
        "".join(text for _, text in pieces),
        tuple((file, text.count("\n")) for file, text in pieces),
    )


@dataclass(frozen=True)
class Library:
    """Every script as one function library (``FUNCTION LOAD``, then ``FCALL``).

    Attributes
    ----------
    name:
        The library's name, ``pharox_<hash>``: the hash is of its code, so two versions of
        this package on one server load two libraries and never replace each other's.
    source:
        The code sent with ``FUNCTION LOAD``; its ``explain`` maps an ``FCALL`` error.
    functions:
        Script name to the name of its function (``<library name>_<script>``; a server's
        function names are global, so they carry the hash too).

    """

    name: str
    source: ScriptSource
    functions: dict[str, str]


@lru_cache(maxsize=1)
def library() -> Library:
    """Return every script as one function library.

    The shared prelude (``_common.lua``, ``_pool.lua``, ``_outcome.lua``, ``_select.lua``,
    ``_wait.lua``) is defined once,
    when the library is loaded, instead of on every call as with ``EVALSHA``. The pool keys
    ``K_<FIELD>`` are locals of the library that a pool script's function sets from its
    KEYS before its body runs (Redis runs one function at a time), so the prelude's
    helpers see the keys of the call in progress; a prelude file must therefore read them
    inside its functions only, never while the library loads. Each script's body becomes
    the body of a function whose parameters are named ``KEYS`` and ``ARGV``, so it runs
    unchanged.
    """
    hashed = _library_pieces("pharox_")
    digest = sha1(_joined("", hashed).text.encode(), usedforsecurity=False).hexdigest()
    name = f"pharox_{digest[:16]}"
    functions = {script: f"{name}_{script}" for script in (*POOL_SCRIPTS, *GLOBAL_SCRIPTS)}
    return Library(name, _joined(name, _library_pieces(name)), functions)


def prelude() -> list[str]:
    """Return the shared files (``_*.lua``) the scripts are built with, in their order.

    In a library each comes once, before every script's function.
    """
    files = (file for source in sources().values() for file, _ in source.parts)
    return [file[: -len(".lua")] for file in dict.fromkeys(files) if file.startswith("_")]


def _library_pieces(name: str) -> list[tuple[str, str]]:
    bind = f"{key_names()} = " + ", ".join(
        f"KEYS[{i}]" for i in range(1, len(PoolKeys._fields) + 1)
    )
    pieces = [
        (LIBRARY_LINES, f"#!lua name={name}\n"),
        (KEY_BINDING, f"local {key_names()}\n"),
        *(_read(part) for part in prelude()),
    ]
    for script in (*POOL_SCRIPTS, *GLOBAL_SCRIPTS):
        head = f"redis.register_function('{name}_{script}', function(KEYS, ARGV)"
        if script in POOL_SCRIPTS:
            head += f" {bind}"
        pieces += [(LIBRARY_LINES, head + "\n"), _read(script), (LIBRARY_LINES, "end)\n")]
    return pieces
