"""Import an optional client library, or say which extra of pharox-redis installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``; when it is missing raise ImportError naming the extra to install.

    The HTTP client libraries are optional: ``pip install "pharox-redis[http]"`` (urllib3,
    requests, PySocks), ``[httpx]`` (httpx with SOCKS), ``[aiohttp]`` (aiohttp,
    aiohttp-socks), ``[celery]``. The core install never imports them.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is not installed: pharox_redis.http needs it here. Install it with "
            f'pip install "pharox-redis[{extra}]"'
        ) from exc
