"""Load the Lua scripts shipped in ``lua/``.

Pool scripts are ``lua/_pool.lua`` followed by the script's own file; global scripts stand
alone. Sources are read once per process; each storage registers its own ``Script`` objects
with its own client (``register_script``), so nothing is bound to a class or module global.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

POOL_SCRIPTS = (
    "lease",
    "release",
    "reclaim",
    "find",
    "save_proxies",
    "delete_proxy",
    "health",
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
    prelude = (folder / "_pool.lua").read_text(encoding="utf-8")
    out = {
        name: prelude + (folder / f"{name}.lua").read_text(encoding="utf-8")
        for name in POOL_SCRIPTS
    }
    out.update(
        {name: (folder / f"{name}.lua").read_text(encoding="utf-8") for name in GLOBAL_SCRIPTS}
    )
    return out
