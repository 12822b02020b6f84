"""Running ``pharox-redis`` as a user does: the installed script, in a subprocess or a pty.

The script next to the running interpreter is the installed entry point (with the editable
install it runs the repository's code; ``PYTHONPATH`` is passed on, so a checkout put first
on the path runs its own code). Without it, ``python -m pharox_redis`` runs the same main.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

SCRIPT = Path(sys.executable).parent / "pharox-redis"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "pharox_redis"]


@dataclass
class Done:
    """A finished run: exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_error_line(self) -> str:
        """Return stderr's only line, checking it is one line and no traceback."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def environment(**extra: str) -> dict[str, str]:
    """Return the environment for a run: no REDIS_URL unless given, plain output."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(extra)
    return env


def run_cli(*args: str, stdin: Optional[str] = None, timeout: float = 60, **env: str) -> Done:
    """Run ``pharox-redis ARGS`` with pipes and return what it did."""
    done = subprocess.run(
        [*COMMAND, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(**env),
    )
    return Done(done.returncode, done.stdout, done.stderr)


@dataclass
class Screen:
    """What a run in a pseudo-terminal wrote, and how it ended."""

    output: bytes
    code: int


# Run in a new session (Popen's start_new_session), the child takes the pty on its stdin as
# its controlling terminal, then becomes pharox-redis: a Ctrl-C typed reaches it as SIGINT.
# (pty.fork would fork the test process, which may have threads running.)
TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


CTRL_C = b"\x03"


def run_in_terminal(
    *args: str,
    typing: Sequence[tuple[bytes, int, bytes]] = (),
    timeout: float = 30,
    **env: str,
) -> Screen:
    """Run ``pharox-redis ARGS`` in a pseudo-terminal of 100 x 40, as a user's shell does.

    ``typing`` is what a user types, in order: ``(text, times, keys)`` types ``keys`` once
    ``text`` has appeared ``times`` times (``(b"Ctrl-C to stop", 2, CTRL_C)``: a Ctrl-C
    after two frames of the live view). The run is killed if it has not ended after
    ``timeout`` seconds.
    """
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", TAKE_TERMINAL, *COMMAND, *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=environment(**env),
        start_new_session=True,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + timeout
    to_type = list(typing)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # every end of the terminal is closed: the child is gone
                    break
                if not data:
                    break
                output += data
            if to_type and output.count(to_type[0][0]) >= to_type[0][1]:
                os.write(primary, to_type.pop(0)[2])
        else:
            child.kill()
    finally:
        os.close(primary)
    return Screen(output, child.wait(10))
