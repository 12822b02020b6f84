"""Facts about the machine and the software versions, for the report's header."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(redis_description: str, postgres_version: str) -> dict[str, str]:
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores",
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "Redis": redis_description,
        "PostgreSQL": postgres_version,
        "pharox": version_of("pharox"),
        "pharox-redis": version_of("pharox-redis"),
        "redis-py": f"{version_of('redis')} (hiredis {version_of('hiredis')})",
        "fakeredis": version_of("fakeredis"),
        "SQLAlchemy / psycopg": f"{version_of('sqlalchemy')} / {version_of('psycopg')}",
    }
