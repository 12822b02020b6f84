"""Every error a user can cause: one line on stderr, its documented exit code, no traceback."""

from __future__ import annotations

import uuid

import pytest

from pharox_redis.cli.errors import ExitCode
from pharox_redis.server import RedisServer

from ..helpers.cli import run_cli
from .conftest import Cli

pytestmark = pytest.mark.real_redis


def test_urls_that_cannot_work() -> None:
    refused = run_cli("verify", "--url", "redis://127.0.0.1:1/0")
    assert refused.code == ExitCode.CONNECTION
    assert refused.one_error_line().startswith("error: redis://127.0.0.1:1/0: ")
    assert refused.out == ""  # not "0 drift"

    shorthand = run_cli("pools", "--url", "127.0.0.1:1")  # host:port means redis://host:port
    assert shorthand.code == ExitCode.CONNECTION
    assert "redis://127.0.0.1:1" in shorthand.one_error_line()

    http = run_cli("stats", "p", "--url", "http://127.0.0.1:1/")
    assert http.code == ExitCode.USAGE
    assert "http://127.0.0.1:1/" in http.one_error_line()

    secret = run_cli("--url", "redis://worker:hunter2@127.0.0.1:1/0", "leases", "p")
    assert secret.code == ExitCode.CONNECTION
    assert "redis://worker:***@127.0.0.1:1/0" in secret.one_error_line()
    assert "hunter2" not in secret.err + secret.out

    demo = run_cli("--url", "http://127.0.0.1:1/")  # the demo too: one line, not a traceback
    assert demo.code == ExitCode.USAGE
    assert "http://127.0.0.1:1/" in demo.one_error_line()


def test_redis_url_from_the_environment(redis_server: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    done = run_cli("verify", "--prefix", prefix, REDIS_URL=redis_server.url)
    assert done.code == ExitCode.OK, done.err
    assert done.out.startswith("0 pool(s), 0 prox(ies)")
    unreachable = run_cli("pools", REDIS_URL="redis://127.0.0.1:1/0")
    assert unreachable.code == ExitCode.CONNECTION
    assert "127.0.0.1:1" in unreachable.one_error_line()


def test_unknown_pools_and_leases(cli: Cli) -> None:
    assert cli("import", "Residential", "-", stdin="127.0.0.1:9001\n").code == ExitCode.OK
    for args in (
        ("stats", "nosuch"),
        ("leases", "nosuch"),
        ("export", "nosuch"),
        ("delete-pool", "nosuch", "--yes"),
        ("verify", "--pool", "nosuch"),
    ):
        done = cli(*args)
        assert done.code == ExitCode.NOT_FOUND, (args, done)
        assert done.one_error_line() == "error: no pool named 'nosuch'", args
        assert done.out == ""
    wrong_case = cli("stats", "residential")
    assert wrong_case.code == ExitCode.NOT_FOUND
    assert "did you mean 'Residential'?" in wrong_case.one_error_line()
    for lease_id in (str(uuid.uuid4()), "not-a-lease-id"):
        done = cli("release", lease_id)
        assert done.code == ExitCode.NOT_FOUND
        assert done.one_error_line().startswith(f"error: no lease '{lease_id}'")
    nobody = cli("leases", "Residential", "--consumer", "nobody")
    assert nobody.code == ExitCode.NOT_FOUND
    assert nobody.one_error_line() == "error: no consumer named 'nobody'"


def test_usage_errors() -> None:
    unknown = run_cli("stat", "p")
    assert unknown.code == ExitCode.USAGE
    assert "invalid choice: 'stat'" in unknown.err and "Traceback" not in unknown.err
    extra = run_cli("pools", "--url", "redis://127.0.0.1:1/0", "--frobnicate")
    assert extra.code == ExitCode.USAGE
    assert "unrecognized arguments: --frobnicate" in extra.err
    version = run_cli("--version")
    assert version.code == ExitCode.OK and version.out.startswith("pharox-redis 0.")
    helped = run_cli("--help")
    assert helped.code == ExitCode.OK
    for name in ("pools", "stats", "import", "export", "leases", "release", "delete-pool"):
        assert name in helped.out
    assert "  3  connection" in helped.out  # the exit codes are in --help
