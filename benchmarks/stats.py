"""Small statistics helpers: percentiles, medians, geometric means, lease overlap."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Optional


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Return the q-th percentile (0-100) by linear interpolation, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Latencies:
    """Percentiles of the ``latencies`` (seconds) a result collected."""

    latencies: list[float]

    @property
    def p50(self) -> Optional[float]:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> Optional[float]:
        return percentile(self.latencies, 99)


def median(values: Sequence[float]) -> Optional[float]:
    """Return the median, None when empty."""
    return percentile(values, 50)


def geometric_mean(values: Iterable[float]) -> Optional[float]:
    """Return the geometric mean of positive values, None when there are none."""
    logs = [math.log(v) for v in values if v > 0]
    if not logs:
        return None
    return math.exp(sum(logs) / len(logs))


def max_overlap(intervals: Iterable[tuple[Any, Any]]) -> int:
    """Return the most half-open ``[start, end)`` intervals open at the same moment.

    An interval ending at t and another starting at t do not overlap (ends sort first).
    """
    events: list[tuple[Any, int]] = []
    for start, end in intervals:
        if end < start:
            raise ValueError(f"interval ends before it starts: {start!r} > {end!r}")
        events.append((start, 1))
        events.append((end, -1))
    events.sort()
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak
