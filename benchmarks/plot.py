"""The PNG: acquire+release cycles/s against worker processes, per manager, with the floor.

Rotate and batch windows, when this build has them, are drawn as leases/s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .worker_side import KIND_NAMES, LEASE_KINDS
from .workers import WorkersResult


def plot_cycles(workers: WorkersResult, path: Path, single: dict[str, float]) -> Optional[str]:
    """Write the plot; return None, or why it was not written.

    ``single`` holds one-process cycles/s of other backends (pharox's benchmark), drawn as
    horizontal reference lines.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    floor = workers.rates("evalsha")
    if floor:
        xs = sorted(floor)
        ax.plot(xs, [floor[n] / 2 for n in xs], "k--", marker="o", label="floor: EVALSHA / 2")
    for kind, style in (("fast", "-"), ("stock", "-"), ("rotate", "-."), ("batch", "-.")):
        rates = workers.rates(kind)
        if rates:
            xs = sorted(rates)
            unit = " (leases/s)" if kind in LEASE_KINDS else ""
            label = f"Redis, {KIND_NAMES[kind]}{unit}"
            ax.plot(xs, [rates[n] for n in xs], style, marker="o", label=label)
    for index, (label, rate) in enumerate(sorted(single.items())):
        ax.axhline(rate, linestyle=":", color=f"C{index + 3}", label=f"{label}, 1 process")
    ax.set_xlabel("worker processes (spawn), one shared pool")
    ax.set_ylabel("acquire+release cycles/s, or leases/s (all processes)")
    ax.set_title("pharox-redis: leasing throughput against worker count")
    ax.set_ylim(bottom=0)
    ax.set_xscale("log", base=2)
    counts = sorted({n for n, _ in workers.configs})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None
