"""Load the Lua scripts shipped in ``lua/``.

Pool scripts are ``lua/_pool.lua`` followed by the script's own file; the two that walk the
selector order (``find`` and ``acquire``) also get ``lua/_select.lua`` in between. Global
scripts stand alone. Sources are read once per process; each storage registers its own
``Script`` objects with its own client (``register_script``), so nothing is bound to a class or
module global.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

SELECT_SCRIPTS = ("find", "acquire")
POOL_SCRIPTS = (
    *SELECT_SCRIPTS,
    "lease",
    "release",
    "reclaim",
    "renew",
    "save_proxies",
    "delete_proxy",
    "health",
    "audit",
)
GLOBAL_SCRIPTS = ("register_pool", "unregister_pool", "schedule", "due")


def lua_dir() -> Path:
    """Return the folder holding the ``.lua`` files.

    In a wheel they are package data (``pharox_redis/lua``); in a source checkout they are
    the top-level ``lua/`` folder next to the package.
    """
    packaged = Path(str(resources.files("pharox_redis"))) / "lua"
    if (packaged / "_pool.lua").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"


@lru_cache(maxsize=1)
def sources() -> dict[str, str]:
    """Return each script's complete source by name."""
    folder = lua_dir()

    def read(name: str) -> str:
        return (folder / f"{name}.lua").read_text(encoding="utf-8")

    out = {}
    for name in POOL_SCRIPTS:
        preludes = ("_pool", "_select") if name in SELECT_SCRIPTS else ("_pool",)
        out[name] = "".join(read(p) for p in (*preludes, name))
    out.update({name: read(name) for name in GLOBAL_SCRIPTS})
    return out
