"""In a real terminal (a pty): ``stats --watch`` redraws in place and Ctrl-C ends it cleanly;
``import`` shows its progress; ``delete-pool`` asks.

A thread of the test leases and releases in a loop meanwhile, as a fleet would, so the view
has leases per second and a consumer to show.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pharox_redis import RedisProxyManager, RedisStorage
from pharox_redis.cli.errors import ExitCode
from pharox_redis.server import RedisServer

from ..helpers.cli import CTRL_C, run_cli, run_in_terminal
from .conftest import Cli

pytestmark = pytest.mark.real_redis

RATE = re.compile(rb"leases/s (\d+\.\d)")
PLAIN_ERASE = re.compile(rb"\x1b\[\d+F\x1b\[J")  # cursor up N lines, clear to the end


@pytest.fixture
def fleet(cli: Cli, admin: RedisStorage) -> Iterator[None]:
    """A pool of 4 proxies, one lease held by 'fleet-1' and a thread cycling leases."""
    stdin = "".join(f"127.0.0.1:{9001 + i}\n" for i in range(4))
    assert cli("import", "crawl", "-", stdin=stdin).code == ExitCode.OK
    manager = RedisProxyManager(admin)
    held = manager.acquire("crawl", "fleet-1", 600)
    assert held is not None
    stop = threading.Event()

    def lease_in_a_loop() -> None:
        while not stop.is_set():
            leased = manager.acquire("crawl", "fleet-2", 60)
            if leased is not None:
                manager.release_proxy(leased)
            stop.wait(0.01)

    thread = threading.Thread(target=lease_in_a_loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)
    manager.release_proxy(held)


def test_watch_redraws_in_place_and_stops_on_ctrl_c(
    fleet: None, redis_server: RedisServer, prefix: str
) -> None:
    where = ("--url", redis_server.url, "--prefix", prefix)
    screen = run_in_terminal(
        "stats",
        "crawl",
        "--watch",
        "--interval",
        "0.3",
        *where,
        typing=[(b"Ctrl-C to stop", 3, CTRL_C)],
    )
    out = screen.output
    assert screen.code == ExitCode.OK, out[-2000:]
    assert b"Traceback" not in out and b"KeyboardInterrupt" not in out
    assert out.count(b"pool crawl") >= 3  # three frames at least
    assert b"\x1b[1A\x1b[2K" in out  # rich moved the cursor up to redraw in place
    assert "┏".encode() in out  # rich's tables
    assert b"fleet-1" in out
    rates = [float(m) for m in RATE.findall(out)]
    assert rates and max(rates) > 0, out[-2000:]
    assert out.rstrip().endswith(b"\x1b[?25h")  # the cursor is shown again on leaving


def test_plain_watch_in_a_terminal_and_a_pipe(
    fleet: None, redis_server: RedisServer, prefix: str
) -> None:
    where = ("--url", redis_server.url, "--prefix", prefix)
    watch = ("stats", "crawl", "--watch", "--interval", "0.2", "--count", "3", *where)
    screen = run_in_terminal(*watch, PHAROX_REDIS_PLAIN="1")
    assert screen.code == ExitCode.OK, screen.output[-2000:]
    assert screen.output.count(b"pool crawl") == 3
    assert len(PLAIN_ERASE.findall(screen.output)) == 2  # frames 2 and 3 replace the one before
    assert "┏".encode() not in screen.output

    piped = run_cli(*watch, "--json")
    assert piped.code == ExitCode.OK, piped.err
    readings = [json.loads(line) for line in piped.out.splitlines()]
    assert len(readings) == 3
    assert readings[0]["leases_per_second"] is None
    assert all(r["leases_per_second"] is not None for r in readings[1:])
    assert max(r["leases_per_second"] for r in readings[1:]) > 0, readings
    assert readings[-1]["top_consumers"][0]["consumer"] == "fleet-1"


def test_import_progress_and_delete_confirmation(
    redis_server: RedisServer, prefix: str, admin: RedisStorage, tmp_path: Path
) -> None:
    where = ("--url", redis_server.url, "--prefix", prefix)
    listed = tmp_path / "proxies.txt"
    listed.write_text("".join(f"10.3.{i // 250}.{i % 250 + 1}:3128\n" for i in range(2500)))
    shown = run_in_terminal("import", "big", str(listed), *where)
    assert shown.code == ExitCode.OK, shown.output[-2000:]
    assert b"importing into big" in shown.output  # rich's progress bar, on stderr
    assert b"imported 2500 proxies into pool 'big' (created)" in shown.output

    kept = run_in_terminal("delete-pool", "big", *where, typing=[(b"[y/N]", 1, b"n\r")])
    assert b"delete pool 'big' with 2500 proxies and 0 active lease(s)? [y/N]" in kept.output
    assert kept.code == ExitCode.USAGE and b"error: not deleted" in kept.output
    assert [p.name for p in admin.list_pools()] == ["big"]
    gone = run_in_terminal("delete-pool", "big", *where, typing=[(b"[y/N]", 1, b"y\r")])
    assert gone.code == ExitCode.OK and b"deleted pool 'big'" in gone.output
    assert admin.list_pools() == []
