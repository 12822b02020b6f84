"""The built wheel ships the Lua scripts and works installed in a fresh virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import pytest

from pharox_redis.server import RedisServer

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import pharox_redis
    from pharox import Proxy, ProxyManager, ProxyPool, ProxyProtocol, ProxyStatus
    from pharox_redis import RedisStorage
    from pharox_redis.scripts import lua_dir

    venv = Path(sys.prefix).resolve()
    package = Path(pharox_redis.__file__).resolve()
    assert package.is_relative_to(venv), (package, venv)
    assert lua_dir().resolve().is_relative_to(venv), (lua_dir(), venv)
    assert (lua_dir() / "lease.lua").is_file()

    url, prefix = sys.argv[1], sys.argv[2]
    storage = RedisStorage.from_url(url, prefix=prefix)
    pool = ProxyPool(name="wheel")
    storage.save_pool(pool)
    storage.save_proxy(Proxy(host="203.0.113.7", port=8080, protocol=ProxyProtocol.HTTP,
                             pool_id=pool.id, status=ProxyStatus.ACTIVE, max_concurrency=1))
    manager = ProxyManager(storage)
    lease = manager.acquire_proxy("wheel", "wheel-test")
    assert lease is not None
    assert manager.acquire_proxy("wheel", "wheel-test") is None
    manager.release_proxy(lease)
    stats = storage.get_pool_stats("wheel")
    assert stats is not None and stats.total_leases == 0, stats
    storage.delete_pool(str(pool.id))
    leftovers = list(storage.client.scan_iter(match=prefix + ":*"))
    if leftovers:
        storage.client.unlink(*leftovers)
    print("OK")
""")


def run(args: list[str], timeout: float, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
@pytest.mark.real_redis
# Building and installing into a fresh venv is bounded by its own subprocess timeouts
# (840 s in all), longer than the suite's 180 s per test on a loaded machine.
@pytest.mark.timeout(900)
def test_wheel_installs_and_leases(redis_server: RedisServer, tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO)
    dist = tmp_path / "dist"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(dist),
            str(REPO),
        ],
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("pharox_redis-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    lua_files = sorted(p.name for p in (REPO / "lua").glob("*.lua"))
    assert {"_pool.lua", "lease.lua"} <= set(lua_files)
    missing = [
        f"pharox_redis/lua/{name}" for name in lua_files if f"pharox_redis/lua/{name}" not in names
    ]
    assert not missing, f"wheel lacks {missing}"
    assert "pharox_redis/py.typed" in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)],
        timeout=300,
        cwd=tmp_path,
    )

    script = tmp_path / "check_install.py"
    script.write_text(SCRIPT, encoding="utf-8")
    prefix = f"wheel{uuid.uuid4().hex[:10]}"
    result = run([str(python), str(script), redis_server.url, prefix], timeout=120, cwd=tmp_path)
    assert result.stdout.strip().splitlines()[-1] == "OK", result.stdout

    # The command line runs from the wheel alone (no rich: the plain output), bench included.
    command = str(venv / "bin" / "pharox-redis")
    version = run([command, "--version"], timeout=60, cwd=tmp_path)
    assert version.stdout.startswith("pharox-redis "), version.stdout
    bench = [command, "bench", "--url", redis_server.url, "--cycles", "20", "--json"]
    report = json.loads(run([*bench, "--selector", "first_available"], 120, tmp_path).stdout)
    assert [row["selector"] for row in report["results"]] == ["first_available"]
    assert report["results"][0]["redis"]["misses"] == 0
