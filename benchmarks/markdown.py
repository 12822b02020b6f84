"""Markdown helpers the report's sections share: tables and number formats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return a Markdown table and a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def us(seconds: Optional[float]) -> str:
    """Seconds as whole microseconds, ``-`` for None."""
    return "-" if seconds is None else f"{seconds * 1e6:,.0f}"


def rate(value: Optional[float]) -> str:
    """A rate (or any count) with thousands separators, ``-`` for None."""
    return "-" if value is None else f"{value:,.0f}"
