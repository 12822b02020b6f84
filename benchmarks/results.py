"""What one run measured, section by section, and the numbers the targets need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .backends import BackendsResult
from .cost import CostResult
from .filters import FiltersResult
from .http import HttpResult
from .profile import ProfileResult
from .scale import ScaleResult
from .scaleout import ScaleOutResult
from .stats import percentile
from .targets import FleetFigures, Measured
from .waiting import WaitingResult
from .workers import WorkersResult


@dataclass
class Results:
    backends: Optional[BackendsResult] = None
    workers: Optional[WorkersResult] = None
    scale: Optional[ScaleResult] = None
    filters: Optional[FiltersResult] = None
    profile: Optional[ProfileResult] = None
    scaleout: Optional[ScaleOutResult] = None
    cost: Optional[CostResult] = None
    http: Optional[HttpResult] = None
    waiting: Optional[WaitingResult] = None
    notes: list[str] = field(default_factory=list)
    plot_note: Optional[str] = None  # why the plot was not written, when it was not


def measured(results: Results) -> Measured:
    """Extract the inputs of ``targets.evaluate``."""
    m = Measured()
    if results.backends is not None:
        m.leasing = results.backends.by_selector()
        stock = [t for t in results.backends.round_trips if t.manager.startswith("ProxyManager")]
        if stock:
            m.stock_round_trips = stock[0].acquire
    if results.workers is not None:
        w = results.workers
        m.floor_evalsha = w.rates("evalsha")
        m.fast_cycles = w.rates("fast")
        m.rotate_leases = w.rates("rotate")
        m.batch_leases = w.rates("batch")
        m.unavailable.update(w.unavailable)
        for (n, kind), config in w.configs.items():
            if kind == "fast":
                m.fast_exceptions[n] = config.exceptions
                audit = config.audit
                m.fast_overlap_excess[n] = audit.excess if audit is not None else 0
    if results.scale is not None:
        s = results.scale
        m.scale_p50 = {size.size: size.p50 for size in s.sizes if size.p50 is not None}
        if s.sizes:
            largest = s.sizes[-1]
            m.bytes_per_proxy = largest.bytes_per_proxy
            m.largest_pool = largest.size
            if largest.load_seconds > 0:
                m.import_rate = largest.size / largest.load_seconds
        if s.churn is not None:
            before, after = s.churn.worse
            m.churn_cycles = s.churn.cycles
            m.churn_before, m.churn_after = float(before), float(after)
    if results.cost is not None:
        c = results.cost
        m.calls_per_cycle = {s: w.calls_per_unit for s, w in c.cycle.items() if w.units}
        m.redis_us_per_cycle = {s: w.us_per_unit for s, w in c.cycle.items() if w.units}
        m.baseline_us_per_cycle = {s: w.us_per_unit for s, w in c.baseline.items() if w.units}
    if results.waiting is not None:
        for mode, run in results.waiting.runs.items():
            m.fleets[mode] = FleetFigures(
                run.commands_per_lease,
                percentile(run.waits, 99),
                run.fairness,
                run.misses,
                run.overlap,
            )
    return m
