"""Render the run as Markdown (``BENCHMARKS.md``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .backends import SELECTORS, BackendsResult
from .cost import cost_lines
from .filters import FiltersResult
from .http import http_lines
from .markdown import rate, table, us
from .profile import ProfileResult
from .results import Results
from .rotate_batch import rotate_batch_lines
from .scale import LOAD_CHUNK, ScaleResult
from .scaleout import scaleout_lines
from .settings import Settings
from .stats import geometric_mean, percentile
from .targets import (
    IN_MEMORY,
    T1_FLOOR_FRACTION,
    T2_VS_IN_MEMORY,
    T3_FLOOR_FRACTION,
    T3_PROCESSES,
    T6_VS_IN_MEMORY,
    Verdict,
)
from .waiting import waiting_lines
from .workers_report import workers_lines


def verdict_lines(verdicts: Sequence[Verdict]) -> list[str]:
    rows = [[v.name, v.goal, f"**{v.status}**", v.measured, v.detail] for v in verdicts]
    return table(["target", "goal", "verdict", "measured", "detail"], rows)


def backends_lines(b: BackendsResult) -> list[str]:
    by = b.by_selector()
    memory = by.get(IN_MEMORY, {})
    selectors = [s.value for s in SELECTORS]
    rows = []
    for label, rates in by.items():
        mean = geometric_mean(rates.values())
        vs = [rates[s] / memory[s] for s in rates if s in memory and memory[s] > 0]
        vs_mean = geometric_mean(vs)
        rows.append(
            [label]
            + [rate(rates.get(s)) for s in selectors]
            + [rate(mean), "-" if vs_mean is None else f"{vs_mean:.2f}"]
        )
    lines = table(
        ["backend / manager", *selectors, "geometric mean", "x InMemory"],
        rows,
    )
    misses = [f"{r.label} {r.selector}" for r in b.rows if r.hits != r.iterations]
    lines.append(
        "Acquire+release cycles/s, one process. Every run got a lease on every iteration."
        if not misses
        else f"Runs with misses (no proxy free): {', '.join(misses)}."
    )
    lines.append("")
    lines.append("Round trips on the real Redis (warm caches, averaged over the four selectors):")
    lines.append("")
    trip_rows = [
        [
            t.manager,
            f"{t.acquire:g}",
            f"{t.acquire_commands:g}",
            f"{t.release:g}",
            f"{t.release_commands:g}",
        ]
        for t in b.round_trips
    ]
    lines += table(
        [
            "manager",
            "acquire: round trips",
            "acquire: commands",
            "release: round trips",
            "release: commands",
        ],
        trip_rows,
    )
    return lines


def scale_lines(s: ScaleResult) -> list[str]:
    selectors = [x.value for x in SELECTORS]
    rows = []
    for size in s.sizes:
        rows.append(
            [
                f"{size.size:,}",
                f"{size.load_seconds:.2f}",
                rate(size.size / size.load_seconds if size.load_seconds else None),
                f"{size.memory_used_delta / size.size:,.0f}",
                f"{size.memory_keys / size.size:,.0f}",
                us(size.p50),
                us(size.p99),
            ]
            + [us(percentile(size.by_selector.get(sel, []), 50)) for sel in selectors]
        )
    lines = table(
        [
            "proxies",
            "bulk load s",
            "proxies/s",
            "bytes/proxy (used_memory)",
            "bytes/proxy (MEMORY USAGE)",
            "acquire p50 us",
            "acquire p99 us",
            *[f"p50 us {sel}" for sel in selectors],
        ],
        rows,
    )
    lines.append(
        f"Bulk load: `add_proxies_bulk` in chunks of {LOAD_CHUNK:,} (building the pydantic "
        "models is not timed); the largest pool's rate and the larger of its two memory "
        "figures count for T5."
    )
    lines.append("")
    c = s.churn
    if c is not None:
        lines.append(
            f"Memory churn: {c.cycles:,} acquire/release cycles on the {c.size:,}-proxy pool "
            f"({c.cycles / c.seconds:,.0f} cycles/s) with lease_retention_seconds={c.retention:g}; "
            "each side measured after the retention passed and a few cycles ran:"
        )
        lines.append("")
        lines += table(
            ["measure", "before", "after", "after / before"],
            [
                [
                    "server used_memory",
                    f"{c.before.used:,}",
                    f"{c.after.used:,}",
                    f"{c.after.used / c.before.used:.4f}",
                ],
                [
                    "MEMORY USAGE of the pool's keys",
                    f"{c.before.keys:,}",
                    f"{c.after.keys:,}",
                    f"{c.after.keys / c.before.keys:.4f}",
                ],
                ["lease records kept", str(c.records_before), str(c.records_after), "-"],
            ],
        )
    return lines


def filters_lines(f: FiltersResult) -> list[str]:
    rows = [
        [
            r.name,
            f"{r.matching:,} ({r.matching / f.pool_size:.1%})",
            us(r.p50),
            us(r.p99),
            f"{r.hits}/{r.hits + r.misses + r.errors}",
            str(r.errors),
        ]
        for r in f.rows
    ]
    lines = [
        f"RedisProxyManager on a pool of {f.pool_size:,} proxies with source, country, city, "
        f"coordinates, isp and asn set ({f.bytes_per_proxy:,.0f} bytes/proxy, loaded in "
        f"{f.load_seconds:.1f} s); selectors cycling; acquire timed, then released.",
        "",
    ]
    return lines + table(
        ["filter", "matching proxies", "p50 us", "p99 us", "leased", "exceptions"], rows
    )


def profile_lines(p: ProfileResult, results: Results) -> list[str]:
    """Break one cycle down and say what each unmet target would need."""
    floor = 2 * p.noop_us
    server = p.server_us
    rows = [
        ["acquire + release cycle (RedisProxyManager, wall)", f"{p.cycle_us:,.0f}"],
        ["two no-op EVALSHA round trips (the floor's cycle)", f"{floor:,.0f}"],
    ]
    if server is not None:
        rest = p.cycle_us - floor - server
        rows += [
            [f"Redis time per {name} (INFO commandstats)", f"{us_:,.0f}"]
            for name, us_ in sorted(p.script_us.items())
        ]
        rows.append(["the rest: Python beyond a no-op round trip", f"{rest:,.0f}"])
    lines = table(["one process, warm, pool of 32", "us"], rows)
    if p.note:
        lines += [f"({p.note})", ""]
    lines += [
        "Share of the profiled time (cProfile inflates Python time, so read it as shares):",
        "",
        *table(
            ["where", "share"],
            [[k, f"{v:.0%}"] for k, v in sorted(p.profile_share.items(), key=lambda i: -i[1])],
        ),
        "Top functions by own time (us per cycle under the profiler):",
        "",
        *table(["function", "us"], [[f"`{name}`", f"{t:,.1f}"] for name, t in p.top]),
    ]
    if server is None:
        return lines
    best = floor / (floor + server)
    lines += [
        "What the targets would need:",
        "",
        f"- **T1** ({T1_FLOOR_FRACTION:g} x floor) needs a cycle of at most "
        f"{floor / T1_FLOOR_FRACTION:,.0f} us. Redis alone "
        f"spends {server:,.0f} us running the two scripts, so even with no Python work at all "
        f"a cycle would take {floor + server:,.0f} us, {best:.2f} x floor. The scripts keep "
        "the four selector orders, the counters, the deadline index and the lease record in "
        "step atomically; that is the work a no-op script does not do.",
    ]
    if results.backends is not None:
        in_memory = geometric_mean(results.backends.by_selector().get(IN_MEMORY, {}).values())
        if in_memory:
            in_memory_us = 1e6 / in_memory
            lines += [
                f"- **T2** ({T2_VS_IN_MEMORY:g} x InMemoryStorage) needs a cycle of at most "
                f"{in_memory_us / T2_VS_IN_MEMORY:,.0f} us: pharox's in-memory cycle takes "
                f"{in_memory_us:,.0f} us here, and two round trips to Redis plus the two "
                f"scripts take {floor + server:,.0f} us before any Python work.",
                f"- **T6** (stock ProxyManager >= {T6_VS_IN_MEMORY:g} x InMemoryStorage) needs a "
                f"cycle of at most {in_memory_us / T6_VS_IN_MEMORY:,.0f} us, but pharox's "
                "manager makes 6 round trips per "
                f"cycle (cleanup, find, lease, stats; release, stats): at least "
                f"{3 * floor:,.0f} us before any script runs.",
            ]
    if results.workers is not None:
        four = results.workers.rates("evalsha").get(T3_PROCESSES)
        if four:
            cores = os.cpu_count() or 1
            lines.append(
                f"- **T3** ({T3_PROCESSES} processes >= {T3_FLOOR_FRACTION:g} x their floor) "
                f"needs {T3_FLOOR_FRACTION * four / 2:,.0f} cycles/s. Redis is single-threaded "
                "and spends "
                f"{server:,.0f} us per cycle in the scripts, so it alone cannot serve more than "
                f"{1e6 / server:,.0f} cycles/s. A cycle also costs about {p.cycle_us:,.0f} us "
                "of CPU between the client and Redis (one process keeps about one core busy), "
                f"so {cores} core(s) can run at most about {cores * 1e6 / p.cycle_us:,.0f} "
                "cycles/s in all, whereas no-op round trips need far less CPU each."
            )
    return [*lines, ""]


def render(
    settings: Settings,
    results: Results,
    verdicts: Sequence[Verdict],
    facts: dict[str, str],
    date: str,
    seconds: float,
) -> str:
    out = settings.out
    plot_link = None
    if results.workers is not None and results.plot_note is None:
        plot_link = Path(os.path.relpath(str(settings.plot), str(out.parent))).as_posix()
    lines = [
        "# pharox-redis benchmarks",
        "",
        f"Generated by `benchmarks/` on {date} in {seconds:,.0f} s"
        + (
            " with **--quick** (tiny settings: not the targets' conditions)."
            if settings.quick
            else "."
        ),
        "",
        "```bash",
        settings.command,
        "```",
        "",
    ]
    lines += table(["machine", ""], [[k, v] for k, v in facts.items()])
    lines.append(
        "The machine is shared and noisy, so every headline figure is a ratio of two "
        "figures measured in this same run."
    )
    lines.append("")
    lines += ["## Targets", "", *verdict_lines(verdicts)]
    if results.backends is not None:
        lines += [
            "## 1. Backends on pharox's leasing benchmark",
            "",
            f"`pharox.run_leasing_benchmark` ({settings.iterations} iterations, a pool of "
            f"{settings.pool_size}) for pharox's stock ProxyManager; the same loop "
            "(`benchmarks.backends.fast_leasing_benchmark`) for RedisProxyManager. Fresh "
            "storage for every run.",
            "",
        ]
        lines += backends_lines(results.backends)
    if results.workers is not None:
        w = results.workers
        lines += [
            "## 2-3. Worker processes on one pool, and the round-trip floor",
            "",
            f"N `spawn` processes start together on a barrier and run timed {settings.seconds:g} s "
            f"windows ({settings.rounds} round(s), median counts): PING and EVALSHA of "
            "`return 1` (the floor: what Python and redis-py can do against this Redis), then "
            f"acquire+release cycles (ROUND_ROBIN) on a shared pool of {w.pool_size} proxies "
            f"with max_concurrency={w.max_concurrency}. A cycle needs two round trips, so "
            "`x floor` = cycles/s / (EVALSHA/s / 2).",
            "",
        ]
        lines += workers_lines(w, plot_link)
    if results.scale is not None:
        lines += ["## 4. Scale", "", *scale_lines(results.scale)]
    if results.filters is not None:
        lines += ["## 5. Filters", "", *filters_lines(results.filters)]
    if results.profile is not None:
        lines += [
            "## 6. Where a cycle's time goes",
            "",
            "The profile behind the targets that are not met: one process, RedisProxyManager, "
            "ROUND_ROBIN on a pool of 32 (`benchmarks/profile.py`).",
            "",
            *profile_lines(results.profile, results),
        ]
    if results.scaleout is not None:
        lines += scaleout_lines(results.scaleout, settings)
    if results.cost is not None:
        lines += cost_lines(results.cost, results.workers, settings)
    if results.workers is not None and any(settings.runs(k) for k in ("rotate", "batch")):
        lines += rotate_batch_lines(results.workers, settings)
    if results.http is not None:
        lines += http_lines(results.http)
    if results.waiting is not None:
        lines += waiting_lines(results.waiting, settings)
    notes = list(results.notes)
    if results.plot_note:
        notes.append(f"plot not written: {results.plot_note}")
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines).rstrip() + "\n"
