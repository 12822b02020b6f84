"""Run the sections asked for, check the targets, write the report and the plot."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Optional

from . import postgres
from .backends import run_backends
from .cost import run_cost
from .filters import run_filters
from .http import run_http
from .machine import machine_facts
from .plot import plot_cycles
from .profile import run_profile
from .redis_target import open_redis
from .report import render
from .results import Results, measured
from .scale import run_scale
from .scaleout import run_scaleout
from .settings import Settings, parse_settings
from .stats import geometric_mean
from .targets import IN_MEMORY, POSTGRES, REDIS_FAST, REDIS_STOCK, Verdict, evaluate
from .waiting import run_waiting
from .workers import run_workers


def say(line: str) -> None:
    print(line, flush=True)


def postgres_version(settings: Settings) -> str:
    if settings.postgres_dsn is None:
        return "not used (--postgres-dsn none)"
    version, why_not = postgres.probe(settings.postgres_dsn)
    return version if version is not None else f"unavailable: {why_not}"


def run(settings: Settings) -> tuple[Results, dict[str, str]]:
    results = Results()
    with open_redis(settings.redis_url) as target:
        say(f"redis: {target.description}")
        facts = machine_facts(target.description, postgres_version(settings))
        if settings.runs("backends"):
            say("== 1. backends: pharox's leasing benchmark")
            results.backends = run_backends(settings, target, say)
            results.notes += results.backends.notes
        if any(settings.runs(s) for s in ("workers", "floor", "rotate", "batch")):
            say(
                f"== 2-3, 9. worker processes {settings.processes}: the round-trip floor, "
                "cycles, rotate and batch"
            )
            results.workers = run_workers(settings, target, say)
            results.notes += results.workers.notes
        if settings.runs("scale"):
            say(f"== 4. scale: pools of {', '.join(f'{n:,}' for n in settings.scale_sizes)}")
            results.scale = run_scale(settings, target, say)
        if settings.runs("filters"):
            say(f"== 5. filters on {settings.filter_pool_size:,} proxies")
            results.filters = run_filters(settings, target, say)
        if settings.runs("profile"):
            say("== 6. profile of one process's cycle")
            results.profile = run_profile(settings, target, say)
        if settings.runs("cost"):
            say("== 8. Redis work per cycle (INFO commandstats)")
            results.cost = run_cost(settings, target, say)
            results.notes += results.cost.notes
        if settings.runs("http"):
            say("== HTTP: the leasing clients against bare urllib3 and httpx")
            results.http = run_http(settings, target, say)
        if settings.runs("waiting"):
            say("== 10. waiting for a proxy against polling")
            results.waiting = run_waiting(settings, target, say)
            results.notes += results.waiting.notes
    if settings.runs("scaleout"):
        say(f"== 7. scale-out: 1 and 3 cluster masters, {settings.processes} processes")
        results.scaleout = run_scaleout(settings, say)
    return results, facts


def single_process_rates(results: Results) -> dict[str, float]:
    """One-process cycles/s (geometric mean over selectors) of the backends, for the plot."""
    if results.backends is None:
        return {}
    by = results.backends.by_selector()
    out = {}
    for label in (IN_MEMORY, POSTGRES, REDIS_STOCK, REDIS_FAST):
        mean = geometric_mean(by.get(label, {}).values())
        if mean is not None:
            out[f"pharox benchmark: {label}"] = mean
    return out


def print_verdicts(verdicts: list[Verdict]) -> None:
    say("== targets")
    for v in verdicts:
        say(f"  {v.name} {v.status.upper():<12} {v.measured:<40} {v.goal}")
        say(f"       {v.detail}")


def main(argv: Optional[list[str]] = None) -> int:
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    say(f"$ {settings.command}")
    results, facts = run(settings)
    verdicts = evaluate(measured(results))
    print_verdicts(verdicts)
    if results.workers is not None:
        results.plot_note = plot_cycles(
            results.workers, settings.plot, single_process_rates(results)
        )
        say(f"plot: {settings.plot}" if results.plot_note is None else results.plot_note)
    elapsed = time.monotonic() - started
    text = render(settings, results, verdicts, facts, date, elapsed)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(text)
    say(f"report: {settings.out} ({elapsed:,.0f} s)")
    return 0
