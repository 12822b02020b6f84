"""The benchmark harness (``python -m benchmarks``): target verdicts, helpers, a smoke run.

The smoke run is the whole harness on ``--quick`` settings (a few seconds), writing the
report and the plot into a temporary folder, so the harness cannot rot. PostgreSQL is
used when it answers at the default DSN, and reported as skipped otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from benchmarks import postgres
from benchmarks.cli import main
from benchmarks.settings import DEFAULT_POSTGRES_DSN, parse_settings, redact
from benchmarks.stats import geometric_mean, max_overlap, percentile
from benchmarks.targets import (
    IN_MEMORY,
    MET,
    NOT_MEASURED,
    NOT_MET,
    POSTGRES,
    REDIS_FAST,
    REDIS_STOCK,
    FleetFigures,
    Measured,
    Verdict,
    evaluate,
    floor_fraction,
)
from benchmarks.worker_side import KIND_NAMES
from pharox_redis import RedisProxyManager

from ..helpers import IN_CI

SELECTORS = ("first_available", "least_used", "round_robin", "lowest_latency")


def per_selector(rate: float) -> dict[str, float]:
    return dict.fromkeys(SELECTORS, rate)


def all_met() -> Measured:
    """Numbers that meet every target, each with some margin."""
    return Measured(
        floor_evalsha={1: 20_000.0, 4: 40_000.0},
        fast_cycles={1: 9_000.0, 4: 14_000.0},  # 0.90 and 0.70 of the floors
        fast_exceptions={1: 0, 4: 0},
        fast_overlap_excess={1: 0, 4: 0},
        leasing={
            REDIS_FAST: per_selector(9_000.0),
            REDIS_STOCK: per_selector(6_500.0),
            IN_MEMORY: per_selector(3_000.0),
            POSTGRES: per_selector(100.0),
        },
        stock_round_trips=4.0,
        scale_p50={100: 200e-6, 100_000: 210e-6, 1_000_000: 250e-6},
        bytes_per_proxy=600.0,
        import_rate=60_000.0,
        largest_pool=1_000_000,
        churn_cycles=100_000,
        churn_before=100e6,
        churn_after=105e6,
        rotate_leases={1: 14_000.0},  # 1.4 x the floor's 10,000 cycles/s
        batch_leases={1: 50_000.0},  # 5.6 x 9,000 cycles/s
        calls_per_cycle=per_selector(18.0),
        redis_us_per_cycle=per_selector(50.0),
        baseline_us_per_cycle=per_selector(110.0),
        fleets={
            "polling": FleetFigures(34.0, 0.68, 0.91, 0, 1),
            "waiting": FleetFigures(27.0, 0.022, 1.0, 0, 1),
        },
    )


def by_name(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.name: v for v in verdicts}


def test_every_target_met() -> None:
    verdicts = evaluate(all_met())
    assert [v.name for v in verdicts] == [f"T{n}" for n in range(1, 10)]
    assert all(v.status == MET for v in verdicts), verdicts
    v = by_name(verdicts)
    assert v["T1"].measured == "0.90 x floor"
    assert v["T2"].measured == "3.00 x InMemory (worst selector)"
    assert "90.0 x PostgresStorage" in v["T2"].detail
    assert v["T4"].measured == "1.25 x"
    assert v["T5"].measured == "600 bytes/proxy, after/before 1.050, 60,000 proxies/s"
    assert v["T6"].measured == "4 round trips, 2.17 x InMemory"
    assert v["T7"].measured == "rotate 1.40 x floor, batch 5.56 x cycles"
    assert v["T8"].measured == "18.0 calls, 0.45 x time before"
    assert v["T9"].measured == "27.0 vs 34.0 commands, p99 22 vs 680 ms, Jain 1.000"


def test_t9_fails_on_each_part() -> None:
    for change in (
        {"commands_per_lease": 35.0},
        {"p99_wait": 0.7},
        {"fairness": 0.94},
        {"gave_up": 1},
        {"overlap": 2},
    ):
        m = all_met()
        m.fleets["waiting"] = dataclasses.replace(m.fleets["waiting"], **change)
        failed = [v.name for v in evaluate(m) if v.status != MET]
        assert failed == ["T9"], (change, failed)
    m = all_met()
    del m.fleets["polling"]
    assert by_name(evaluate(m))["T9"].status == NOT_MEASURED


def test_each_target_can_fail() -> None:
    m = all_met()
    m.fast_cycles = {1: 7_000.0, 4: 14_000.0}  # T1: 0.70 x floor
    m.fast_exceptions[4] = 1  # T3: one exception is enough
    m.leasing[IN_MEMORY]["lowest_latency"] = 3_100.0  # T2: one selector below 3 x
    m.scale_p50[1_000_000] = 300e-6  # T4: 1.5 x
    m.churn_after = 111e6  # T5: 11% growth
    m.stock_round_trips = 5.0  # T6
    m.rotate_leases[1] = 12_000.0  # T7: rotate 1.2 x the floor's cycle rate
    m.calls_per_cycle["least_used"] = 21.0  # T8: one selector above 20 calls
    m.fleets["waiting"] = FleetFigures(40.0, 0.022, 1.0, 0, 1)  # T9: more commands than polling
    v = by_name(evaluate(m))
    assert {name: verdict.status for name, verdict in v.items()} == dict.fromkeys(v, NOT_MET)
    assert v["T1"].measured == "0.70 x floor"
    assert v["T2"].measured == "2.90 x InMemory (worst selector)"
    assert "worst selector lowest_latency" in v["T2"].detail
    assert v["T3"].measured.endswith("1 exceptions, 0 overlaps")
    assert v["T7"].measured.startswith("rotate 1.20 x floor")
    assert v["T8"].measured.startswith("21.0 calls") and "least_used" in v["T8"].detail


def test_t5_t7_t8_fail_on_each_part() -> None:
    for change in (
        {"import_rate": 49_000.0},
        {"bytes_per_proxy": 641.0},
        {"batch_leases": {1: 40_000.0}},
        {"redis_us_per_cycle": {**per_selector(50.0), "round_robin": 60.0}},
    ):
        m = all_met()
        for name, value in change.items():
            setattr(m, name, value)
        failed = [v.name for v in evaluate(m) if v.status != MET]
        assert len(failed) == 1, (change, failed)


def test_overlaps_and_memory_per_proxy_fail_on_their_own() -> None:
    m = all_met()
    m.fast_overlap_excess[4] = 1
    m.bytes_per_proxy = 1025.0
    v = by_name(evaluate(m))
    assert v["T3"].status == NOT_MET and "1 overlaps" in v["T3"].measured
    assert v["T5"].status == NOT_MET
    assert v["T1"].status == MET


def test_missing_inputs_are_not_measured_never_met() -> None:
    verdicts = evaluate(Measured())
    assert all(v.status == NOT_MEASURED for v in verdicts), verdicts
    m = all_met()
    del m.leasing[POSTGRES]  # Postgres unreachable: T2 no longer needs it
    del m.leasing[IN_MEMORY]["round_robin"]  # a selector that did not run
    del m.fast_cycles[4]  # --processes 1,2
    m.unavailable["rotate"] = "RedisProxyManager.rotate: not available in this build"
    m.baseline_us_per_cycle = {}  # --baseline-ref none
    v = by_name(evaluate(m))
    assert v["T2"].status == NOT_MEASURED and "round_robin" in v["T2"].detail
    assert v["T3"].status == NOT_MEASURED
    assert v["T6"].status == MET
    assert v["T7"].status == NOT_MEASURED and "not available in this build" in v["T7"].detail
    assert v["T8"].status == NOT_MEASURED and v["T8"].measured.startswith("18.0 calls")


def test_ratios_compare_selectors_both_ran() -> None:
    m = all_met()
    m.leasing[POSTGRES] = {"first_available": 100.0, "least_used": 150.0}
    v = by_name(evaluate(m))
    expected = geometric_mean([90.0, 60.0])
    assert v["T2"].detail.endswith(f"{expected:.1f} x PostgresStorage")


def test_floor_fraction_counts_two_round_trips_per_cycle() -> None:
    assert floor_fraction(5_000, 20_000) == pytest.approx(0.5)


def test_stats_helpers() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)
    assert geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert geometric_mean([]) is None


def test_max_overlap_counts_simultaneous_intervals() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def at(ms: int) -> datetime:
        return t0 + timedelta(milliseconds=ms)

    triple = [(at(0), at(10)), (at(2), at(8)), (at(5), at(6)), (at(20), at(30))]
    assert max_overlap(triple) == 3
    # touching intervals are not simultaneous
    assert max_overlap([(at(0), at(5)), (at(5), at(10)), (at(10), at(15))]) == 1
    assert max_overlap([(0, 4), (1, 5), (2, 6), (4, 7)]) == 3
    assert max_overlap([(0, 5), (5, 10)]) == 1
    assert max_overlap([]) == 0
    with pytest.raises(ValueError):
        max_overlap([(5, 1)])


def test_settings_quick_and_full_defaults() -> None:
    full = parse_settings([])
    assert full.processes == (1, 2, 4, 8)
    assert full.iterations == 2000 and full.pool_size == 32
    assert full.scale_sizes == (100, 10_000, 100_000, 1_000_000)
    assert full.churn_cycles == 100_000
    assert full.postgres_dsn == DEFAULT_POSTGRES_DSN and full.redis_url is None
    quick = parse_settings(["--quick", "--only", "scale,backends", "--postgres-dsn", "none"])
    assert quick.sections == ("backends", "scale") and quick.postgres_dsn is None
    assert quick.iterations < full.iterations
    with pytest.raises(SystemExit):
        parse_settings(["--only", "nonsense"])


def test_passwords_never_reach_the_report() -> None:
    assert redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact("postgresql://bob:pw@host/db") == "postgresql://bob:***@host/db"
    assert redact("postgresql://postgres@127.0.0.1/test") == "postgresql://postgres@127.0.0.1/test"
    settings = parse_settings(["--redis-url", "redis://u:pw@127.0.0.1:1/0"])
    assert "pw" not in settings.command and "u:***@" in settings.command


def test_postgres_dsn_uses_psycopg3() -> None:
    assert postgres.driver_dsn("postgresql://p@h/d") == "postgresql+psycopg://p@h/d"
    assert postgres.driver_dsn("postgresql+asyncpg://p@h/d") == "postgresql+asyncpg://p@h/d"


@pytest.mark.slow
@pytest.mark.real_redis
@pytest.mark.cluster  # section 7 starts local clusters (redis-cli --cluster create)
def test_quick_run_writes_report_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "BENCHMARKS.md", tmp_path / "cycles.png"
    argv = ["--quick", "--seconds", "0.2", "--out", str(out), "--plot", str(plot)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = out.read_text()

    headings = ["## Targets", "## 1. Backends", "## 2-3. Worker", "## 4. Scale", "## 5.", "## 6."]
    headings += ["## 7. Scale-out on Redis Cluster", "## 8. Redis work and CPU per cycle"]
    headings.append("## 9. Rotate and batch leasing")
    headings.append("## 10. Waiting for a proxy against polling")
    for heading in headings:
        assert heading in report
    assert "python -m benchmarks --quick --seconds 0.2" in report
    for name in (f"T{n}" for n in range(1, 10)):
        row = re.search(rf"^\| {name} \|.*\*\*(met|not met|not measured)\*\* \|", report, re.M)
        assert row, f"no verdict row for {name}"
        assert re.search(rf"^  {name} (MET|NOT MET|NOT MEASURED)", printed, re.M)
    for label in ("redis/RedisProxyManager", "redis/ProxyManager", "in-memory/ProxyManager"):
        assert f"| {label} |" in report
    for what in ("EVALSHA return 1", "PING", "RedisProxyManager", "ProxyManager (stock)"):
        assert re.search(rf"^\| [12] \| {re.escape(what)} \|", report, re.M), what
    assert "(0 beyond)" in report and " beyond)" in report
    assert not re.search(r"\((?!0 )\d+ beyond\)", report), "a proxy was over-leased"
    assert "| equality: country=AR |" in report and "| Python predicate" in report
    assert re.search(r"^\| 1 \| [\d,]+ \| [\d,]+ \| [\d.]+ \|$", report, re.M)  # scale-out
    assert "one pool can serve at most about" in report
    for selector in SELECTORS:  # section 8: redis.calls and Redis time per cycle
        assert re.search(rf"^\| acquire\+release, {selector} \| \d+\.\d \| ", report, re.M)
    assert re.search(r"^\| before issue 12 \(\w+\), round_robin \| \d+\.\d \| ", report, re.M)
    assert re.search(r"^\| [12] \| RedisProxyManager \| [\d,]+ \| cycle \| \d", report, re.M)
    for kind, method in (("rotate", "rotate"), ("batch", "acquire_many")):
        if hasattr(RedisProxyManager, method):  # section 9 ran it, audited
            assert re.search(rf"^\| [12] \| {re.escape(KIND_NAMES[kind])} \|", report, re.M)
        else:
            assert f"- `{kind}`: RedisProxyManager.{method}" in report

    if IN_CI:  # CI installs the bench extra and has PostgreSQL: nothing may be skipped
        assert postgres.probe(DEFAULT_POSTGRES_DSN)[0] is not None
        assert importlib.util.find_spec("matplotlib") is not None
    if postgres.probe(DEFAULT_POSTGRES_DSN)[0] is not None:
        assert "| postgres/ProxyManager |" in report
    else:
        assert "PostgresStorage skipped" in report
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "](cycles.png)" in report
    else:
        assert "plot not written: matplotlib is not installed" in report
