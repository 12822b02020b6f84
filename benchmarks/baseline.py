"""Today's Redis work per cycle, measured in the same run: the code of an older commit.

T8 asks for Redis time per cycle at most half of "today's" in the same run. Today's is the
code before issue 12 (``--baseline-ref``, by default ``settings.BASELINE_REF``):
``git archive`` extracts that commit's ``pharox_redis`` and ``lua`` into a temporary
folder, and ``python -m benchmarks.commandstats`` runs there in a subprocess, against the
same Redis as this run, with ``pharox_redis`` imported from that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from .commandstats import Work
from .redis_target import RedisTarget
from .settings import ROOT

TIMEOUT = 600.0


def extract(ref: str, into: Path) -> None:
    """Write ``ref``'s ``pharox_redis`` and ``lua`` folders into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "pharox_redis", "lua"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)


def measure_baseline(
    ref: str, target: RedisTarget, cycles: int, selectors: list[str]
) -> tuple[dict[str, Work], Optional[str]]:
    """Return the baseline's work per selector, or ``({}, why it could not be measured)``."""
    with tempfile.TemporaryDirectory(prefix="pharox-redis-baseline-") as folder:
        try:
            extract(ref, Path(folder))
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            why = stderr.decode(errors="replace").strip() or repr(exc)
            return {}, f"baseline {ref[:12]} not measured: git archive failed: {why[:200]}"
        prefix = target.fresh_prefix("baseline")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([folder, str(ROOT)]))
        command = [sys.executable, "-m", "benchmarks.commandstats", target.url, prefix]
        command += [str(cycles), ",".join(selectors)]
        try:
            done = subprocess.run(
                command, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT
            )
        finally:
            for name in selectors:
                target.drop_prefix(f"{prefix}-{name}")
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            return {}, f"baseline {ref[:12]} not measured: {tail[0][:200]}"
        reply = json.loads(done.stdout.strip().splitlines()[-1])
        if not str(reply["module"]).startswith(folder):
            return {}, f"baseline {ref[:12]} not measured: imported {reply['module']}"
        return {name: Work(**fields) for name, fields in reply["work"].items()}, None
