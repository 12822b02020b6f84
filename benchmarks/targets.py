"""The targets of issue #12 (T6: issue #4; T9: issue #14), as pure functions to verdicts.

Nothing here measures anything: :func:`evaluate` takes a :class:`Measured` (filled in by the
harness, or by hand in a test) and returns one :class:`Verdict` per target. A target whose
inputs are missing (its section was not run, or Postgres was unreachable) is reported as
``not measured``, never as met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .stats import geometric_mean

MET = "met"
NOT_MET = "not met"
NOT_MEASURED = "not measured"

T1_FLOOR_FRACTION = 0.8
T2_VS_IN_MEMORY = 3.0
T2_SELECTORS = ("first_available", "least_used", "round_robin", "lowest_latency")
T3_PROCESSES = 4
T3_FLOOR_FRACTION = 0.6
T4_P50_GROWTH = 1.3
T4_SMALL, T4_LARGE = 100, 1_000_000
T5_BYTES_PER_PROXY = 640.0
T5_POOL_SIZE = 1_000_000
T5_CHURN_CYCLES = 100_000
T5_CHURN_DRIFT = 0.10
T5_IMPORT_RATE = 50_000.0  # proxies/s through add_proxies_bulk
T6_ROUND_TRIPS = 4.0
T6_VS_IN_MEMORY = 2.0
T7_ROTATE_VS_FLOOR = 1.3  # rotations/s over the floor's cycle rate, 1 process
T7_BATCH_VS_CYCLES = 5.0  # leases/s in batches of 10 over acquire+release cycles/s
T8_CALLS_PER_CYCLE = 20.0
T8_TIME_VS_BASELINE = 0.5
T9_FAIRNESS = 0.95  # Jain's index of leases per worker, the waiting fleet

# Labels of the leasing configurations (backend/manager) the targets compare.
REDIS_FAST = "redis/RedisProxyManager"
REDIS_STOCK = "redis/ProxyManager"
IN_MEMORY = "in-memory/ProxyManager"
POSTGRES = "postgres/ProxyManager"


@dataclass(frozen=True)
class FleetFigures:
    """One contended fleet of the waiting section (``polling`` or ``waiting``)."""

    commands_per_lease: float
    p99_wait: Optional[float]  # seconds
    fairness: float  # Jain's index of leases per worker
    gave_up: int  # acquires that returned None
    overlap: int  # most holders of one proxy at once


@dataclass
class Measured:
    """Every number a target needs; None (or empty) when it was not measured.

    Rates are per second. ``leasing`` maps a configuration label (``REDIS_FAST``, ...) to
    its cycles/s per selector on pharox's leasing benchmark. Dicts keyed by an int are
    keyed by the number of worker processes (``floor``, ``fast_cycles``, ...) or by pool
    size (``scale_p50``).
    """

    floor_evalsha: dict[int, float] = field(default_factory=dict)  # round trips/s, all procs
    fast_cycles: dict[int, float] = field(default_factory=dict)  # RedisProxyManager cycles/s
    fast_exceptions: dict[int, int] = field(default_factory=dict)
    fast_overlap_excess: dict[int, int] = field(default_factory=dict)  # peak - max_concurrency
    leasing: dict[str, dict[str, float]] = field(default_factory=dict)
    stock_round_trips: Optional[float] = None  # per acquire, stock ProxyManager on Redis
    scale_p50: dict[int, float] = field(default_factory=dict)  # pool size -> seconds
    bytes_per_proxy: Optional[float] = None  # at the largest pool size
    import_rate: Optional[float] = None  # proxies/s, bulk load of the largest pool
    largest_pool: int = 0
    churn_cycles: int = 0
    churn_before: Optional[float] = None  # bytes
    churn_after: Optional[float] = None
    rotate_leases: dict[int, float] = field(default_factory=dict)  # leases/s by processes
    batch_leases: dict[int, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # "rotate"/"batch" -> why not
    calls_per_cycle: dict[str, float] = field(default_factory=dict)  # selector -> redis.calls
    redis_us_per_cycle: dict[str, float] = field(default_factory=dict)  # selector -> us
    baseline_us_per_cycle: dict[str, float] = field(default_factory=dict)  # before issue 12
    fleets: dict[str, FleetFigures] = field(default_factory=dict)  # "polling"/"waiting"


@dataclass(frozen=True)
class Verdict:
    """One target: its status (``met``, ``not met``, ``not measured``) and the ratios."""

    name: str
    goal: str
    status: str
    measured: str  # the measured ratio(s), e.g. "0.42 x floor"
    detail: str

    @property
    def met(self) -> bool:
        return self.status == MET


def _status(ok: bool) -> str:
    return MET if ok else NOT_MET


def floor_fraction(cycles: float, evalsha_rate: float) -> float:
    """Cycles/s as a fraction of the floor: a cycle is at least two round trips."""
    return cycles / (evalsha_rate / 2)


def leasing_ratio(
    leasing: dict[str, dict[str, float]], fast: str, slow: str
) -> Optional[tuple[float, float]]:
    """Return (geometric mean, worst) over the shared selectors of ``fast`` / ``slow``."""
    a, b = leasing.get(fast, {}), leasing.get(slow, {})
    ratios = [a[s] / b[s] for s in a if s in b and b[s] > 0]
    mean = geometric_mean(ratios)
    if mean is None:
        return None
    return mean, min(ratios)


def t1(m: Measured) -> Verdict:
    goal = f"RedisProxyManager, 1 process >= {T1_FLOOR_FRACTION} x floor"
    if 1 not in m.fast_cycles or 1 not in m.floor_evalsha:
        return Verdict("T1", goal, NOT_MEASURED, "-", "needs the 1-process workers and floor")
    ratio = floor_fraction(m.fast_cycles[1], m.floor_evalsha[1])
    detail = (
        f"{m.fast_cycles[1]:,.0f} cycles/s vs floor {m.floor_evalsha[1] / 2:,.0f} "
        "(EVALSHA round trips/s / 2)"
    )
    return Verdict("T1", goal, _status(ratio >= T1_FLOOR_FRACTION), f"{ratio:.2f} x floor", detail)


def t2(m: Measured) -> Verdict:
    goal = (
        f"RedisProxyManager on Redis >= {T2_VS_IN_MEMORY:g} x InMemoryStorage on pharox's "
        "leasing benchmark, every selector"
    )
    fast, memory = m.leasing.get(REDIS_FAST, {}), m.leasing.get(IN_MEMORY, {})
    missing = [s for s in T2_SELECTORS if s not in fast or not memory.get(s)]
    if missing:
        return Verdict("T2", goal, NOT_MEASURED, "-", f"no figures for {', '.join(missing)}")
    ratios = {s: fast[s] / memory[s] for s in T2_SELECTORS}
    worst = min(ratios, key=ratios.__getitem__)
    mean = geometric_mean(ratios.values()) or 0.0
    detail = f"worst selector {worst}; geometric mean {mean:.2f} x InMemory"
    vs_postgres = leasing_ratio(m.leasing, REDIS_FAST, POSTGRES)
    if vs_postgres is not None:
        detail += f"; {vs_postgres[0]:.1f} x PostgresStorage"
    measured = f"{ratios[worst]:.2f} x InMemory (worst selector)"
    return Verdict("T2", goal, _status(ratios[worst] >= T2_VS_IN_MEMORY), measured, detail)


def t3(m: Measured) -> Verdict:
    n = T3_PROCESSES
    goal = (
        f"RedisProxyManager, {n} processes >= {T3_FLOOR_FRACTION} x {n}-process floor, "
        "0 exceptions, 0 overlaps"
    )
    if n not in m.fast_cycles or n not in m.floor_evalsha:
        return Verdict("T3", goal, NOT_MEASURED, "-", f"needs {n} worker processes")
    ratio = floor_fraction(m.fast_cycles[n], m.floor_evalsha[n])
    exceptions = m.fast_exceptions.get(n, 0)
    excess = m.fast_overlap_excess.get(n, 0)
    ok = ratio >= T3_FLOOR_FRACTION and exceptions == 0 and excess <= 0
    detail = (
        f"{m.fast_cycles[n]:,.0f} cycles/s vs floor {m.floor_evalsha[n] / 2:,.0f}; "
        f"{exceptions} exceptions; {max(excess, 0)} overlaps beyond max_concurrency"
    )
    measured = f"{ratio:.2f} x floor, {exceptions} exceptions, {max(excess, 0)} overlaps"
    return Verdict("T3", goal, _status(ok), measured, detail)


def t4(m: Measured) -> Verdict:
    goal = f"acquire p50 at {T4_LARGE:,} proxies <= {T4_P50_GROWTH} x p50 at {T4_SMALL:,}"
    if len(m.scale_p50) < 2:
        return Verdict("T4", goal, NOT_MEASURED, "-", "needs two pool sizes")
    small, large = min(m.scale_p50), max(m.scale_p50)
    ratio = m.scale_p50[large] / m.scale_p50[small]
    detail = (
        f"p50 {m.scale_p50[large] * 1e6:,.0f} us at {large:,} vs "
        f"{m.scale_p50[small] * 1e6:,.0f} us at {small:,}"
    )
    if (small, large) != (T4_SMALL, T4_LARGE):
        detail += f" (sizes differ from the target's {T4_SMALL:,} and {T4_LARGE:,})"
    return Verdict("T4", goal, _status(ratio <= T4_P50_GROWTH), f"{ratio:.2f} x", detail)


def t5(m: Measured) -> Verdict:
    goal = (
        f"<= {T5_BYTES_PER_PROXY:,.0f} bytes of Redis memory per proxy at {T5_POOL_SIZE:,} "
        f"proxies; memory after {T5_CHURN_CYCLES:,} cycles within {T5_CHURN_DRIFT:.0%} of "
        f"before; bulk import >= {T5_IMPORT_RATE:,.0f} proxies/s"
    )
    if (
        m.bytes_per_proxy is None
        or m.import_rate is None
        or m.churn_before is None
        or m.churn_after is None
    ):
        return Verdict("T5", goal, NOT_MEASURED, "-", "needs the scale section")
    drift = m.churn_after / m.churn_before
    ok = (
        m.bytes_per_proxy <= T5_BYTES_PER_PROXY
        and abs(drift - 1) <= T5_CHURN_DRIFT
        and m.import_rate >= T5_IMPORT_RATE
    )
    measured = (
        f"{m.bytes_per_proxy:,.0f} bytes/proxy, after/before {drift:.3f}, "
        f"{m.import_rate:,.0f} proxies/s"
    )
    detail = (
        f"at {m.largest_pool:,} proxies; memory after {m.churn_cycles:,} cycles / before = "
        f"{m.churn_after:,.0f} / {m.churn_before:,.0f} bytes"
    )
    if m.largest_pool < T5_POOL_SIZE:
        detail += f" (a smaller pool than the target's {T5_POOL_SIZE:,})"
    if m.churn_cycles < T5_CHURN_CYCLES:
        detail += f" (fewer cycles than the target's {T5_CHURN_CYCLES:,})"
    return Verdict("T5", goal, _status(ok), measured, detail)


def t6(m: Measured) -> Verdict:
    goal = (
        f"stock ProxyManager on RedisStorage: <= {T6_ROUND_TRIPS:g} round trips per acquire "
        f"and >= {T6_VS_IN_MEMORY:g} x InMemoryStorage"
    )
    vs_memory = leasing_ratio(m.leasing, REDIS_STOCK, IN_MEMORY)
    if m.stock_round_trips is None or vs_memory is None:
        return Verdict("T6", goal, NOT_MEASURED, "-", "needs the backends section")
    ok = m.stock_round_trips <= T6_ROUND_TRIPS and vs_memory[0] >= T6_VS_IN_MEMORY
    measured = f"{m.stock_round_trips:g} round trips, {vs_memory[0]:.2f} x InMemory"
    detail = f"geometric mean over the selectors; worst selector {vs_memory[1]:.2f} x InMemory"
    return Verdict("T6", goal, _status(ok), measured, detail)


def t7(m: Measured) -> Verdict:
    goal = (
        f"1 process: rotate >= {T7_ROTATE_VS_FLOOR:g} x the floor's cycle rate; batches of 10 "
        f">= {T7_BATCH_VS_CYCLES:g} x the acquire+release rate (leases/s)"
    )
    missing = [f"{kind}: {why}" for kind, why in sorted(m.unavailable.items())]
    if missing:
        return Verdict("T7", goal, NOT_MEASURED, "-", "; ".join(missing))
    needed = (m.rotate_leases, m.batch_leases, m.floor_evalsha, m.fast_cycles)
    if any(1 not in values for values in needed):
        return Verdict("T7", goal, NOT_MEASURED, "-", "needs 1-process rotate, batch, floor")
    floor_cycles = m.floor_evalsha[1] / 2
    rotate = m.rotate_leases[1] / floor_cycles
    batch = m.batch_leases[1] / m.fast_cycles[1]
    ok = rotate >= T7_ROTATE_VS_FLOOR and batch >= T7_BATCH_VS_CYCLES
    measured = f"rotate {rotate:.2f} x floor, batch {batch:.2f} x cycles"
    detail = (
        f"rotate {m.rotate_leases[1]:,.0f} leases/s vs floor {floor_cycles:,.0f} cycles/s; "
        f"batch {m.batch_leases[1]:,.0f} leases/s vs {m.fast_cycles[1]:,.0f} cycles/s"
    )
    return Verdict("T7", goal, _status(ok), measured, detail)


def t8(m: Measured) -> Verdict:
    goal = (
        f"<= {T8_CALLS_PER_CYCLE:g} redis.calls per acquire+release cycle, Redis time per "
        f"cycle <= {T8_TIME_VS_BASELINE:g} x before issue 12 (INFO commandstats, every selector)"
    )
    if not m.calls_per_cycle:
        return Verdict("T8", goal, NOT_MEASURED, "-", "needs the cost section")
    worst_calls = max(m.calls_per_cycle, key=m.calls_per_cycle.__getitem__)
    calls = m.calls_per_cycle[worst_calls]
    shared = [s for s in m.redis_us_per_cycle if m.baseline_us_per_cycle.get(s)]
    times = ", ".join(f"{s} {us:,.0f} us" for s, us in m.redis_us_per_cycle.items())
    detail = f"most calls: {worst_calls}; Redis time per cycle: {times}"
    if not shared:
        measured = f"{calls:.1f} calls, time vs before not measured"
        return Verdict("T8", goal, NOT_MEASURED, measured, detail + "; no baseline")
    ratios = {s: m.redis_us_per_cycle[s] / m.baseline_us_per_cycle[s] for s in shared}
    worst = max(ratios, key=ratios.__getitem__)
    ok = calls <= T8_CALLS_PER_CYCLE and ratios[worst] <= T8_TIME_VS_BASELINE
    measured = f"{calls:.1f} calls, {ratios[worst]:.2f} x time before"
    detail += (
        f"; worst time ratio {worst}: {m.redis_us_per_cycle[worst]:,.0f} us vs "
        f"{m.baseline_us_per_cycle[worst]:,.0f} us before"
    )
    return Verdict("T8", goal, _status(ok), measured, detail)


def t9(m: Measured) -> Verdict:
    goal = (
        "a contended fleet waiting (acquire(wait=)) beats polling on commands per lease and "
        f"p99 wait, with Jain's fairness >= {T9_FAIRNESS:g}, no None, no overlap (issue 14)"
    )
    polling, waiting = m.fleets.get("polling"), m.fleets.get("waiting")
    if polling is None or waiting is None or polling.p99_wait is None or waiting.p99_wait is None:
        return Verdict("T9", goal, NOT_MEASURED, "-", "needs the waiting section")
    ok = (
        waiting.commands_per_lease < polling.commands_per_lease
        and waiting.p99_wait < polling.p99_wait
        and waiting.fairness >= T9_FAIRNESS
        and waiting.gave_up == 0
        and waiting.overlap <= 1
    )
    measured = (
        f"{waiting.commands_per_lease:.1f} vs {polling.commands_per_lease:.1f} commands, "
        f"p99 {waiting.p99_wait * 1000:,.0f} vs {polling.p99_wait * 1000:,.0f} ms, "
        f"Jain {waiting.fairness:.3f}"
    )
    detail = (
        f"waiting vs polling; polling's Jain {polling.fairness:.3f}; waiting gave up "
        f"{waiting.gave_up} times, most holders of a proxy {waiting.overlap}"
    )
    return Verdict("T9", goal, _status(ok), measured, detail)


def evaluate(m: Measured) -> list[Verdict]:
    """Return the verdicts of T1 to T9."""
    return [t1(m), t2(m), t3(m), t4(m), t5(m), t6(m), t7(m), t8(m), t9(m)]
