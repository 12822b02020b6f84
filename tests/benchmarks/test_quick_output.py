"""``--quick`` never writes over the committed BENCHMARKS.md and plot.

A full run writes them at the project's root (wherever it is started from); ``--quick``
writes into a fresh temporary folder unless told otherwise, and refuses the committed paths.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.settings import COMMITTED_PLOT, COMMITTED_REPORT, ROOT, parse_settings


def test_full_run_writes_the_committed_files() -> None:
    full = parse_settings([])
    assert (full.out, full.plot) == (COMMITTED_REPORT, COMMITTED_PLOT)
    assert COMMITTED_REPORT == ROOT / "BENCHMARKS.md"


def test_quick_defaults_to_a_temporary_folder() -> None:
    quick = parse_settings(["--quick"])
    temporary = Path(tempfile.gettempdir()).resolve()
    assert quick.out.resolve().is_relative_to(temporary)
    assert quick.plot.parent == quick.out.parent
    assert ROOT not in quick.out.resolve().parents
    assert parse_settings(["--quick"]).out != quick.out  # a fresh folder per run


@pytest.mark.parametrize(
    "argv",
    [
        ["--out", str(COMMITTED_REPORT)],
        ["--plot", str(COMMITTED_PLOT)],
        ["--out", str(ROOT / "benchmarks" / ".." / "BENCHMARKS.md")],
    ],
)
def test_quick_refuses_the_committed_files(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match="never writes over the committed"):
        parse_settings(["--quick", *argv])


@pytest.mark.real_redis
def test_quick_run_leaves_the_committed_files_alone(capsys: pytest.CaptureFixture[str]) -> None:
    committed = [path for path in (COMMITTED_REPORT, COMMITTED_PLOT) if path.exists()]
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in committed}
    argv = ["--quick", "--only", "floor", "--processes", "1", "--rounds", "1"]
    argv += ["--seconds", "0.05", "--postgres-dsn", "none", "--baseline-ref", "none"]
    assert main(argv) == 0
    after = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in committed}
    assert after == before
    printed = capsys.readouterr().out
    written = Path(printed.split("report: ", 1)[1].split(" (", 1)[0])
    assert written.is_file() and ROOT not in written.resolve().parents
    assert "with **--quick**" in written.read_text()
    shutil.rmtree(written.parent)
