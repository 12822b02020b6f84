"""Section 8: Redis's work per cycle, and CPU per cycle from 1 to 8 processes (T8).

One process, warm, a pool of 32: ``--cost-cycles`` counted acquire+release cycles per
selector, then rotations and batches of 10 when this build has them, each counted with
``INFO commandstats`` (``benchmarks.commandstats``: ``redis.call``s and Redis time per
cycle). The same cycles run on the code before issue 12 (``benchmarks.baseline``), in
alternate rounds, so "today's" Redis time comes from the same run on the same server. The
CPU table comes from the worker windows of sections 2-3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from pharox import SelectorStrategy

from .baseline import measure_baseline
from .commandstats import Work, measure
from .markdown import table
from .redis_target import RedisTarget
from .settings import Settings
from .worker_side import KIND_NAMES, kind_available
from .workers import WorkersResult

SELECTORS = tuple(s.value for s in SelectorStrategy)


@dataclass
class CostResult:
    """Work per selector (acquire+release), per rotation and per batched lease."""

    cycle: dict[str, Work] = field(default_factory=dict)
    rotate: Optional[Work] = None
    batch: Optional[Work] = None
    baseline: dict[str, Work] = field(default_factory=dict)
    baseline_ref: Optional[str] = None
    unavailable: dict[str, str] = field(default_factory=dict)  # mode -> why not
    notes: list[str] = field(default_factory=list)


def _measure(target: RedisTarget, mode: str, cycles: int, selector: Optional[str]) -> Work:
    prefix = target.fresh_prefix(f"cost-{mode}")
    try:
        chosen = SelectorStrategy(selector) if selector else None
        return measure(target.url, prefix, mode, cycles, chosen)
    finally:
        target.drop_prefix(prefix)


def run_cost(settings: Settings, target: RedisTarget, say: Callable[[str], None]) -> CostResult:
    """Count Redis's work per cycle, this build's and the baseline's, in alternate rounds."""
    result = CostResult(baseline_ref=settings.baseline_ref)
    cycles = settings.cost_cycles
    if not target.private:
        result.notes.append(
            "section 8 ran on --redis-url: other clients' commands count too (commandstats "
            "is server-wide)"
        )
    for r in range(settings.rounds):
        for which in ("this", "baseline") if r % 2 == 0 else ("baseline", "this"):
            if which == "this":
                for name in SELECTORS:
                    work = _measure(target, "cycle", cycles, name)
                    result.cycle[name] = result.cycle.get(name, Work()).add(work)
                continue
            if result.baseline_ref is None:
                continue
            works, why = measure_baseline(result.baseline_ref, target, cycles, list(SELECTORS))
            if why is not None:  # reported once; the rounds go on without it
                result.notes.append(why)
                say(f"  {why}")
                result.baseline_ref, result.baseline = None, {}
            for name, work in works.items():
                result.baseline[name] = result.baseline.get(name, Work()).add(work)
    for mode in ("rotate", "batch"):
        why_not = kind_available(mode)
        if why_not is not None:
            result.unavailable[mode] = why_not
            continue
        work = Work()
        for _ in range(settings.rounds):
            work = work.add(_measure(target, mode, cycles, None))
        setattr(result, mode, work)
    for line in summary(result):
        say(f"  {line}")
    return result


def summary(c: CostResult) -> list[str]:
    """One line per measurement, for the console."""
    lines = []
    for name, work in c.cycle.items():
        base = c.baseline.get(name)
        line = f"{name}: {work.calls_per_unit:.1f} redis.calls, {work.us_per_unit:.0f} us"
        if base is not None:
            line += f" (baseline {base.calls_per_unit:.1f} calls, {base.us_per_unit:.0f} us)"
        lines.append(line)
    for mode, done in (("rotate", c.rotate), ("batch", c.batch)):
        if done is None:
            lines.append(f"{mode}: {c.unavailable.get(mode, 'not run')}")
            continue
        calls, time = done.calls_per_unit, done.us_per_unit
        lines.append(f"{mode}: {calls:.1f} redis.calls, {time:.0f} us per lease")
    return lines


def _row(what: str, work: Optional[Work], per: str) -> list[str]:
    if work is None or not work.units:
        return [what, "-", "-", "-", "-"]
    return [
        what,
        f"{work.calls_per_unit:.1f}",
        f"{work.us_per_unit:,.1f}",
        f"{work.round_trips_per_unit:.2f}",
        per,
    ]


def cost_lines(c: CostResult, workers: Optional[WorkersResult], settings: Settings) -> list[str]:
    """Return the report's lines for this section."""
    lines = [
        "## 8. Redis work and CPU per cycle",
        "",
        f"One process, warm, a pool of 32, {settings.cost_cycles:,} counted operations per "
        f"row and round ({settings.rounds} round(s), summed). `redis.calls` counts the calls "
        "of every data command in `INFO commandstats` (Redis counts the commands a script "
        "runs), script calls, connection, transaction and admin commands left out; Redis us "
        "is the time of the script calls (EVALSHA/FCALL), the commands they ran included. "
        "SLOWLOG is not used: with a zero threshold it also logs the commands inside a "
        "script and inflates script time by about a fifth.",
        "",
    ]
    rows = [_row(f"acquire+release, {name}", c.cycle.get(name), "cycle") for name in SELECTORS]
    if c.baseline:
        ref = (c.baseline_ref or "?")[:12]
        rows += [
            _row(f"before issue 12 ({ref}), {name}", c.baseline.get(name), "cycle")
            for name in SELECTORS
        ]
    for mode, label in (("rotate", "rotate(leased)"), ("batch", "acquire_many(10) + release_many")):
        work = getattr(c, mode)
        if work is None:
            rows.append([label, c.unavailable.get(mode, "not run"), "-", "-", "-"])
        else:
            rows.append(_row(label, work, "lease"))
    header = ["operation", "redis.calls", "Redis us", "script calls", "per"]
    lines += table(header, rows)
    commands = _top_commands(c)
    if commands:
        lines += [f"Data commands per acquire+release cycle (all selectors): {commands}.", ""]
    if workers is not None:
        lines += cpu_lines(workers)
    return lines


def _top_commands(c: CostResult) -> str:
    total = Work()
    for work in c.cycle.values():
        total = total.add(work)
    if not total.units:
        return ""
    ranked = sorted(total.by_command.items(), key=lambda item: -item[1])
    return ", ".join(f"`{name}` {calls / total.units:.2f}" for name, calls in ranked)


def cpu_lines(w: WorkersResult) -> list[str]:
    """CPU per unit at each process count, from the worker windows of sections 2-3."""
    rows = []
    for n, kind in sorted(w.configs):
        if kind not in ("fast", "evalsha", "rotate", "batch"):
            continue
        config = w.configs[(n, kind)]
        unit = {"fast": "cycle", "evalsha": "round trip"}.get(kind, "lease")
        rows.append(
            [
                str(n),
                KIND_NAMES[kind],
                f"{config.rate:,.0f}",
                unit,
                _per(config.client_cpu_us_per_op),
                _per(config.redis_cpu_us_per_op),
                _per(config.server_us_per_op),
            ]
        )
    if not rows:
        return []
    header = [
        "processes",
        "what",
        "per s",
        "per",
        "client CPU us",
        "Redis CPU us",
        "Redis command us",
    ]
    return [
        "CPU per cycle (or round trip, or lease) in the worker windows of sections 2-3 and 9 "
        "(medians of the rounds): the workers' process CPU time, the redis-server process's "
        "CPU time (`INFO cpu`, user + system) and its command time (`INFO commandstats`):",
        "",
        *table(header, rows),
    ]


def _per(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"
