"""The "http" section: a tiny real run through pproxy, and its table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.http import ASYNC_LEASING, HTTPX, LEASING, SESSION, URLLIB3, HttpResult, http_lines


def test_the_table_gives_medians_ratios_and_the_added_time() -> None:
    result = HttpResult(requests=3, rounds=1)
    result.samples = {
        URLLIB3: [0.001, 0.002, 0.003],
        LEASING: [0.003, 0.004, 0.005],
        SESSION: [0.002],
        HTTPX: [0.002],
        ASYNC_LEASING: [0.003],
    }
    text = "\n".join(http_lines(result))
    assert "| LeasingClient | 4,000 | urllib3 ProxyManager | 2,000 | 2.00 | 2,000 |" in text
    assert "| AsyncLeasingClient | 3,000 | httpx.AsyncClient | 2,000 | 1.50 | 1,000 |" in text
    skipped = HttpResult(skipped="needs pproxy")
    assert "Not run: needs pproxy." in http_lines(skipped)


@pytest.mark.real_redis
def test_a_quick_http_run_measures_every_client(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", "--only", "http", "--http-requests", "5", "--rounds", "1"]
    assert main([*argv, "--postgres-dsn", "none", "--baseline-ref", "none"]) == 0
    printed = capsys.readouterr().out
    written = Path(printed.split("report: ", 1)[1].split(" (", 1)[0])
    text = written.read_text()
    shutil.rmtree(written.parent)
    for mode in (LEASING, SESSION, ASYNC_LEASING):
        row = next(line for line in text.splitlines() if line.startswith(f"| {mode} |"))
        assert "| - |" not in row, row
