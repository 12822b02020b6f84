"""The report's sections 2-3: worker processes on one pool, next to the round-trip floor."""

from __future__ import annotations

from typing import Optional

from .markdown import rate, table, us
from .targets import floor_fraction
from .workers import KIND_NAMES, MANAGER_KINDS, WorkersResult


def workers_lines(w: WorkersResult, plot_link: Optional[str]) -> list[str]:
    counts = sorted({n for n, _ in w.configs})
    floor = w.rates("evalsha")
    rows = []
    for n in counts:
        ping, evalsha = w.get(n, "ping"), w.get(n, "evalsha")
        row = [
            str(n),
            rate(ping.rate if ping else None),
            rate(evalsha.rate if evalsha else None),
            rate(evalsha.rate / 2 if evalsha else None),
        ]
        for kind in ("fast", "stock"):
            config = w.get(n, kind)
            row.append(rate(config.rate if config else None))
            row.append(
                f"{floor_fraction(config.rate, floor[n]):.2f}"
                if config is not None and n in floor
                else "-"
            )
        rows.append(row)
    lines = table(
        [
            "processes",
            "PING/s",
            "EVALSHA/s",
            "floor cycles/s (EVALSHA/2)",
            "RedisProxyManager cycles/s",
            "x floor",
            "stock ProxyManager cycles/s",
            "x floor",
        ],
        rows,
    )
    detail = []
    order = {kind: i for i, kind in enumerate(KIND_NAMES)}
    configs = sorted(w.configs.values(), key=lambda c: (c.processes, order[c.kind]))
    for c in configs:
        n, kind, audit = c.processes, c.kind, c.audit
        errors = ", ".join(f"{k} {v}" for k, v in sorted(c.errors.items())) or "0"
        detail.append(
            [
                str(n),
                KIND_NAMES[kind],
                rate(c.rate),
                us(c.p50),
                us(c.p99),
                "-" if c.server_us_per_op is None else f"{c.server_us_per_op:,.0f}",
                str(c.misses) if kind in MANAGER_KINDS else "-",
                errors,
                str(audit.leases) if audit else "-",
                f"{audit.peak} ({audit.excess} beyond)" if audit else "-",
            ]
        )
    lines.append(
        "Per configuration (median rate of the rounds: round trips, cycles, or leases for "
        "rotate and batch; latency percentiles over all calls of all rounds; `server us/op` "
        "is Redis's own command time per round trip, cycle or lease, from INFO "
        "commandstats, Lua included; the audit replays every stored lease on the server's "
        "clock):"
    )
    lines.append("")
    lines += table(
        [
            "processes",
            "what",
            "per s",
            "p50 us",
            "p99 us",
            "server us/op",
            "misses (None)",
            "exceptions",
            "leases audited",
            "peak leases on one proxy",
        ],
        detail,
    )
    for c in configs:
        for name, message in sorted(c.messages.items()):
            lines.append(
                f"- {c.processes} processes, {KIND_NAMES[c.kind]}, first {name}: `{message}`"
            )
    if any(c.messages for c in w.configs.values()):
        lines.append("")
    if plot_link:
        lines += [f"![cycles/s against worker processes]({plot_link})", ""]
    return lines
