"""Section 9: rotate and batch leasing, from the worker windows (T7).

``rotate`` windows hold one lease per worker and call ``RedisProxyManager.rotate(leased)``
(release it and lease the next proxy, one round trip); ``batch`` windows call
``acquire_many(pool_name, 10)`` and ``release_many(leases)``. Both are counted in leases/s
and compared with the floor's cycle rate (EVALSHA/s / 2) and with the acquire+release cycle
rate of the same process count (one lease per cycle). A build without these methods reports
them as not available.
"""

from __future__ import annotations

from typing import Optional

from .markdown import rate, table
from .settings import Settings
from .worker_side import BATCH_SIZE
from .workers import WorkersResult


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def rotate_batch_lines(w: WorkersResult, settings: Settings) -> list[str]:
    """Return the report's lines for this section."""
    lines = [
        "## 9. Rotate and batch leasing",
        "",
        f"The worker windows of sections 2-3 ({settings.rounds} round(s) of "
        f"{settings.seconds:g} s, ROUND_ROBIN, max_concurrency={w.max_concurrency}): "
        f"`rotate` on the pool of {w.pool_size}, batches of {BATCH_SIZE} on a pool of "
        f"{w.batch_pool_size} (a full batch for every worker). Leases/s over all processes; "
        "`x floor` divides by the floor's cycle rate (EVALSHA/s / 2), `x cycles` by "
        "RedisProxyManager's acquire+release cycles/s (one lease each) at the same count.",
        "",
    ]
    for kind, why in sorted(w.unavailable.items()):
        lines += [f"- `{kind}`: {why}"]
    if w.unavailable:
        lines.append("")
    floor, cycles = w.rates("evalsha"), w.rates("fast")
    rotate, batch = w.rates("rotate"), w.rates("batch")
    if not rotate and not batch:
        return lines
    rows = []
    for n in sorted({n for n, _ in w.configs}):
        half = floor[n] / 2 if n in floor else None
        rows.append(
            [
                str(n),
                rate(half),
                rate(cycles.get(n)),
                rate(rotate.get(n)),
                _ratio(rotate.get(n), half),
                rate(batch.get(n)),
                _ratio(batch.get(n), cycles.get(n)),
            ]
        )
    header = [
        "processes",
        "floor cycles/s",
        "acquire+release leases/s",
        "rotate leases/s",
        "x floor",
        f"batch of {BATCH_SIZE} leases/s",
        "x cycles",
    ]
    lines += table(header, rows)
    lines += [
        "Latency, misses, exceptions and the lease audit of these windows are in the "
        "per-configuration table of sections 2-3.",
        "",
    ]
    return lines
