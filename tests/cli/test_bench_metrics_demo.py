"""``bench``, ``metrics --port`` and the demo's way in (bare ``pharox-redis``, ``demo --help``)."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from pharox_redis import RedisStorage
from pharox_redis.cli.errors import ExitCode
from pharox_redis.server import RedisServer

from ..helpers.cli import COMMAND, environment, run_cli
from .conftest import Cli

pytestmark = pytest.mark.real_redis


def test_bench_compares_and_leaves_nothing(redis_server: RedisServer, admin: RedisStorage) -> None:
    keys_before = admin.client.dbsize()
    done = run_cli("bench", "--url", redis_server.url, "--cycles", "30", "--json")
    assert done.code == ExitCode.OK, done.err
    report = done.json()
    assert [r["selector"] for r in report["results"]] == [
        "first_available",
        "least_used",
        "round_robin",
        "lowest_latency",
    ]
    for row in report["results"]:
        assert row["redis"]["misses"] == row["in_memory"]["misses"] == 0
        assert row["redis"]["cycles_per_second"] > 0 and row["ratio"] > 0
    assert admin.client.dbsize() == keys_before  # its own prefix, removed at the end
    table = run_cli("bench", "--url", redis_server.url, "--cycles", "5", "--selector", "least_used")
    assert table.code == ExitCode.OK
    assert table.out.splitlines()[1].split()[:2] == ["selector", "redis"]


def test_metrics_serves_the_pools(cli: Cli, redis_server: RedisServer, prefix: str) -> None:
    assert cli("import", "scraped", "-", stdin="127.0.0.1:9001\n127.0.0.1:9002\n").code == 0
    where = ["--url", redis_server.url, "--prefix", prefix]
    with subprocess.Popen(
        [*COMMAND, "metrics", "--port", "0", "--seconds", "20", *where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    ) as server:
        assert server.stdout is not None and server.stderr is not None
        try:
            line = server.stdout.readline()  # "serving metrics on http://127.0.0.1:PORT/..."
            assert line.startswith("serving metrics on http://127.0.0.1:"), line
            with urllib.request.urlopen(line.split()[3], timeout=10) as reply:
                text = reply.read().decode()
        finally:
            server.terminate()
    assert 'pharox_pool_proxies_available{pool="scraped"} 2.0' in text, text
    assert 'pharox_pool_leases_active{pool="scraped"} 0.0' in text, text


def test_the_demo_is_still_the_default() -> None:
    helped = run_cli("demo", "--help")
    assert helped.code == ExitCode.OK and "--fakeredis" in helped.out
    unknown = run_cli("--fakeredis", "--frobnicate")  # the demo's own parser
    assert unknown.code == ExitCode.USAGE and "--frobnicate" in unknown.err
    started = time.monotonic()
    refused = run_cli("--url", "redis://127.0.0.1:1/0")  # bare: the demo, on that URL
    assert refused.code == ExitCode.CONNECTION
    assert refused.one_error_line().startswith("error: redis://127.0.0.1:1/0: ")
    assert time.monotonic() - started < 30
