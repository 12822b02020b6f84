"""``python -m pharox_redis`` (the demo) runs end to end and cleans up after itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pharox_redis.server import RedisServer

REPO = Path(__file__).resolve().parents[2]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "pharox_redis", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_output(result: subprocess.CompletedProcess[str], backend: str) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"backend: {backend}"), lines[0]
    final = [line for line in lines if line.startswith("final: ")]
    assert len(final) == 1, result.stdout
    assert final[0].endswith("leased=0 leases=0"), final[0]
    assert lines[-1] == "all leases back to 0", result.stdout
    request = [line for line in lines if line.startswith("request via a leased proxy")]
    assert len(request) == 1 and "-> 200 'hello via 1.1 pharox-demo-proxy'" in request[0]
    assert len(lines) <= 30, f"demo output should stay short:\n{result.stdout}"
    return lines


@pytest.mark.slow
def test_demo_on_fakeredis() -> None:
    lines = check_output(run_demo("--fakeredis"), "fakeredis")
    assert "for demos and tests only" in lines[0]


@pytest.mark.slow
@pytest.mark.real_redis
def test_demo_on_url_leaves_no_keys(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        size_before = client.dbsize()
        result = run_demo("--url", redis_server.url)
        lines = check_output(result, "redis ")
        found = re.search(r"prefix '([^']+)'", lines[0])
        assert found, lines[0]
        prefix = found.group(1)
        assert prefix.startswith("pharox-demo-")
        assert any(line.startswith("cleanup: ") for line in lines), result.stdout
        assert list(client.scan_iter(match=f"{prefix}*", count=1000)) == []
        assert list(client.scan_iter(match="pharox-demo*", count=1000)) == []
        assert client.dbsize() == size_before
