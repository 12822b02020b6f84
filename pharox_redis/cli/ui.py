"""Tables, a live view and a progress bar: with rich in a terminal, plain text otherwise.

rich (the ``cli`` extra) draws the tables, the live view of ``stats --watch`` and the
progress bar of ``import`` when the output is a terminal. Without rich, with
``PHAROX_REDIS_PLAIN=1``, or when the output is a pipe or a file, the same content is plain
text: aligned columns, a live view that redraws itself in place with ANSI cursor moves (in a
terminal) or prints one frame after another (elsewhere), and a one-line counter for progress.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Optional, TextIO

PLAIN_ENV = "PHAROX_REDIS_PLAIN"


def use_rich(stream: TextIO) -> bool:
    """Return True when ``stream`` is a terminal, rich is installed and not turned off."""
    if os.environ.get(PLAIN_ENV) or importlib.util.find_spec("rich") is None:
        return False
    return stream.isatty()


@dataclass
class Table:
    """A titled table of text cells; numbers are right-aligned."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)

    def numeric(self, column: int) -> bool:
        """Return True when a column holds numbers (and None, shown as '-') only."""
        values = [row[column] for row in self.rows if row[column] is not None]
        return bool(values) and all(isinstance(v, (int, float)) for v in values)

    def plain(self) -> list[str]:
        """Return the table as aligned lines of text, title first."""
        cells = [[str(c) for c in self.columns]] + [[cell(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        numeric = [self.numeric(i) for i in range(len(self.columns))]
        lines = [self.title] if self.title else []
        for r in cells:
            parts = [
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(r, widths, numeric, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
        if not self.rows:
            lines.append("(none)")
        return lines

    def rich(self) -> Any:
        """Return the table as a ``rich.table.Table``."""
        from rich.table import Table as RichTable

        table = RichTable(title=self.title or None, title_justify="left")
        for i, name in enumerate(self.columns):
            table.add_column(name, justify="right" if self.numeric(i) else "left")
        for row in self.rows:
            table.add_row(*(cell(v) for v in row))
        return table


def cell(value: object) -> str:
    """Return a table cell's text (floats with one decimal, None as '-')."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def plain_text(blocks: Sequence[Table | str]) -> str:
    """Return blocks (tables or lines of text) as plain text, a blank line between tables."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            if lines:
                lines.append("")
            lines.extend(block.plain())
        else:
            lines.append(block)
    return "\n".join(lines)


def rich_group(blocks: Sequence[Table | str]) -> Any:
    """Return blocks as one rich renderable."""
    from rich.console import Group
    from rich.text import Text

    return Group(*(b.rich() if isinstance(b, Table) else Text(b) for b in blocks))


def show(blocks: Sequence[Table | str], stream: Optional[TextIO] = None) -> None:
    """Print blocks once: rich in a terminal, plain text elsewhere."""
    out = stream or sys.stdout
    if use_rich(out):
        from rich.console import Console

        Console(file=out).print(rich_group(blocks))
    else:
        print(plain_text(blocks), file=out, flush=True)


class LiveView:
    """A view redrawn in place: ``with LiveView() as view: view.update(blocks)``.

    rich's ``Live`` in a terminal with rich; else, in a terminal, the previous frame is
    erased with ANSI cursor moves (cursor up, clear to the end of the screen) and the new
    one printed; in a pipe or a file, frames follow each other, separated by a blank line.
    """

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stdout
        self.live: Any = None
        self.height = 0
        self.frames = 0

    def __enter__(self) -> LiveView:
        if use_rich(self.stream):
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self.live = Live(console=console, auto_refresh=False, redirect_stdout=False)
            self.live.__enter__()
        return self

    def update(self, blocks: Sequence[Table | str]) -> None:
        """Replace what is shown by ``blocks``."""
        self.frames += 1
        if self.live is not None:
            self.live.update(rich_group(blocks), refresh=True)
            return
        text = plain_text(blocks)
        if self.stream.isatty():
            erase = f"\x1b[{self.height}F\x1b[J" if self.height else ""
            self.stream.write(erase + text + "\n")
            self.height = text.count("\n") + 1
        else:
            self.stream.write(("\n" if self.frames > 1 else "") + text + "\n")
        self.stream.flush()

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.live is not None:
            self.live.__exit__(kind, exc, tb)


class Progress:
    """Progress of a long job on stderr, shown only in a terminal and for ``total >= least``.

    rich's progress bar with rich, else a counter rewritten in place with a carriage return.
    """

    def __init__(self, description: str, total: int, least: int = 1000) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.stream = sys.stderr
        self.shown = total >= least and self.stream.isatty()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Progress:
        if self.shown and use_rich(self.stream):
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(console=Console(file=self.stream), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int) -> None:
        """Count ``n`` more items done."""
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        elif self.shown:
            self.stream.write(f"\r{self.description} {self.done:,}/{self.total:,}")
            self.stream.flush()

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, exc, tb)
        elif self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
