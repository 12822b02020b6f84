"""The Lua scripts shipped in ``lua/``: their sources, and where a line of one comes from.

Every script starts with ``lua/_common.lua`` (clock and integer helpers). A pool script then
gets one line binding the pool's keys to locals named after :class:`~pharox_redis.keys.PoolKeys`
(their one definition), ``lua/_pool.lua``, and for those that walk a selector's order
(``find``, ``acquire``, ``rotate`` and ``acquire_many``) ``lua/_select.lua``, before its own
body. Sources are read once per process; each executor registers them with its own client,
so no script state lives in a class or a module global.

Because of what comes first, a Lua error names a line of the whole source;
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
POOL_SCRIPTS = (
    *SELECT_SCRIPTS,
    "lease",
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

# Where Redis (``user_script:N``) and fakeredis (``[string "<python>"]:N``) name a line.
_LINE = re.compile(r'(?:@?user_script|\[string "<python>"\]):(\d+|\?)')


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


def key_binding() -> str:
    """Return the Lua line binding a pool script's KEYS to ``K_<FIELD>`` locals."""
    names = ", ".join(f"K_{field.upper()}" for field in PoolKeys._fields)
    values = ", ".join(f"KEYS[{i}]" for i in range(1, len(PoolKeys._fields) + 1))
    return f"local {names} = {values}\n"


@lru_cache(maxsize=1)
def sources() -> dict[str, ScriptSource]:
    """Return every script's source by name."""
    folder = lua_dir()

    def read(name: str) -> tuple[str, str]:
        return f"{name}.lua", (folder / f"{name}.lua").read_text(encoding="utf-8")

    out = {}
    for name in (*POOL_SCRIPTS, *GLOBAL_SCRIPTS):
        pieces = [read("_common")]
        if name in POOL_SCRIPTS:
            pieces += [(KEY_BINDING, key_binding()), read("_pool")]
        if name in SELECT_SCRIPTS:
            pieces.append(read("_select"))
        pieces.append(read(name))
        for file, text in pieces:
            if not text.endswith("\n"):
                raise ValueError(f"{file} must end with a newline")
        out[name] = ScriptSource(
            name,
            "".join(text for _, text in pieces),
            tuple((file, text.count("\n")) for file, text in pieces),
        )
    return out
