"""Command line options and the two sets of defaults: the full run and ``--quick``.

A full run writes the committed report and plot (``BENCHMARKS.md`` and
``benchmarks/cycles.png`` at the project's root, wherever it is started from). ``--quick``
never does: without ``--out`` and ``--plot`` it writes both into a fresh temporary folder,
and it refuses to be pointed at the committed files.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SECTIONS = (
    "backends",
    "workers",
    "floor",
    "rotate",
    "batch",
    "scale",
    "filters",
    "profile",
    "cost",
    "scaleout",
    "http",
    "waiting",
)
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
COMMITTED_REPORT = ROOT / "BENCHMARKS.md"
COMMITTED_PLOT = ROOT / "benchmarks" / "cycles.png"
# The code before issue 12 (the lean hot path): T8 compares Redis time per cycle with it,
# measured in the same run on the same server (``benchmarks.baseline``).
BASELINE_REF = "1a43fff07abfa2c3d122d7403157f3cafd509462"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know; see ``python -m benchmarks --help``."""

    sections: tuple[str, ...]
    quick: bool
    redis_url: Optional[str]
    postgres_dsn: Optional[str]
    fakeredis: bool
    out: Path
    plot: Path
    iterations: int
    pool_size: int
    processes: tuple[int, ...]
    seconds: float
    rounds: int
    worker_pool_size: int
    max_concurrency: int
    scale_sizes: tuple[int, ...]
    scale_acquires: int
    churn_cycles: int
    churn_retention: float
    filter_pool_size: int
    filter_acquires: int
    cost_cycles: int
    http_requests: int
    wait_window: float
    wait_hold: float
    baseline_ref: Optional[str]
    command: str

    def runs(self, section: str) -> bool:
        return section in self.sections


# name: (full run, --quick)
DEFAULTS: dict[str, tuple[object, object]] = {
    "iterations": (2000, 40),
    "pool_size": (32, 32),
    "processes": ("1,2,4,8", "1,2"),
    "seconds": (1.5, 0.25),
    "rounds": (3, 1),
    "worker_pool_size": (32, 8),
    "max_concurrency": (1, 1),
    "scale_sizes": ("100,10000,100000,1000000", "100,1000"),
    "scale_acquires": (2000, 60),
    "churn_cycles": (100_000, 300),
    "churn_retention": (1.0, 0.3),
    "filter_pool_size": (100_000, 1000),
    "filter_acquires": (300, 12),
    "cost_cycles": (2000, 40),
    "http_requests": (1000, 30),
    "wait_window": (5.0, 0.5),
    "wait_hold": (0.02, 0.02),
}


def int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas: {text}")
    return values


def section_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark pharox-redis against pharox's adapters and the Redis "
        "round-trip floor, check the targets and write BENCHMARKS.md with a plot.",
    )
    add = parser.add_argument
    add("--only", type=section_list, default=SECTIONS, help=f"sections: {','.join(SECTIONS)}")
    add("--quick", action="store_true", help="tiny settings (a smoke run of a few seconds)")
    add(
        "--redis-url",
        help="an existing Redis to use instead of a private redis-server (fresh key prefixes, "
        "deleted at the end; never flushed)",
    )
    add(
        "--postgres-dsn",
        default=DEFAULT_POSTGRES_DSN,
        help="PostgreSQL for pharox's PostgresStorage; it works in a private schema that it "
        "drops at the end ('none' to skip)",
    )
    add("--no-fakeredis", action="store_true", help="skip RedisStorage on fakeredis")
    add(
        "--out",
        type=Path,
        help="the report to write (BENCHMARKS.md at the project's root; --quick: a temporary "
        "folder)",
    )
    add(
        "--plot",
        type=Path,
        help="the PNG to write (benchmarks/cycles.png; --quick: next to the report)",
    )
    add("--iterations", type=int, help="pharox leasing benchmark iterations (2000)")
    add("--pool-size", type=int, help="proxies in the leasing benchmark pool (32)")
    add("--processes", type=int_list, help="worker process counts (1,2,4,8)")
    add("--seconds", type=float, help="length of each timed worker window (1.5)")
    add("--rounds", type=int, help="repetitions of each worker window; the median counts (3)")
    add("--worker-pool-size", type=int, help="proxies in the workers' shared pool (32)")
    add("--max-concurrency", type=int, help="max_concurrency of the workers' proxies (1)")
    add(
        "--scale-sizes",
        type=int_list,
        help="pool sizes of the scale section (100,10000,100000,1000000)",
    )
    add("--scale-acquires", type=int, help="timed acquires per pool size (2000)")
    add("--churn-cycles", type=int, help="acquire/release cycles of the memory run (100000)")
    add(
        "--churn-retention",
        type=float,
        help="lease_retention_seconds during the memory run (1.0)",
    )
    add("--filter-pool-size", type=int, help="proxies in the filters' pool (100000)")
    add("--filter-acquires", type=int, help="timed acquires per filter (300)")
    add(
        "--cost-cycles",
        type=int,
        help="counted cycles per selector of the Redis work section (2000)",
    )
    add("--http-requests", type=int, help="requests per mode and round of the http section (1000)")
    add("--wait-window", type=float, help="seconds each fleet of the waiting section runs (5)")
    add("--wait-hold", type=float, help="seconds a lease is held in the waiting section (0.02)")
    add(
        "--baseline-ref",
        default=BASELINE_REF,
        help="git commit whose code T8 compares Redis time per cycle with, measured in the "
        "same run ('none' to skip; default: the code before issue 12)",
    )
    return parser


def output_paths(quick: bool, out: Optional[Path], plot: Optional[Path]) -> tuple[Path, Path]:
    """Return where the report and the plot go.

    A full run defaults to the committed files. ``--quick`` defaults to a fresh temporary
    folder and never writes over the committed files, even when asked to.
    """
    if not quick:
        return out or COMMITTED_REPORT, plot or COMMITTED_PLOT
    if out is None:
        folder = Path(tempfile.gettempdir()) / f"pharox-redis-bench-{uuid.uuid4().hex[:10]}"
        out = folder / "BENCHMARKS.md"  # the folder is made when the report is written
    if plot is None:
        plot = out.parent / "cycles.png"
    for given, committed in ((out, COMMITTED_REPORT), (plot, COMMITTED_PLOT)):
        if given.resolve() == committed:
            raise SystemExit(
                f"--quick never writes over the committed {committed.name}: "
                "pass --out/--plot elsewhere, or leave them out"
            )
    return out, plot


def parse_settings(argv: list[str]) -> Settings:
    """Parse ``argv`` (without the program name) into settings."""
    args = build_parser().parse_args(argv)
    pick = 1 if args.quick else 0

    def value(name: str) -> object:
        given = getattr(args, name)
        if given is not None:
            return given
        default = DEFAULTS[name][pick]
        return int_list(default) if isinstance(default, str) else default

    dsn = args.postgres_dsn
    if dsn is not None and dsn.strip().lower() in ("", "none"):
        dsn = None
    baseline = args.baseline_ref
    if baseline is not None and baseline.strip().lower() in ("", "none"):
        baseline = None
    sections = tuple(s for s in SECTIONS if s in args.only)
    out, plot = output_paths(args.quick, args.out, args.plot)
    return Settings(
        sections=sections,
        quick=args.quick,
        redis_url=args.redis_url,
        postgres_dsn=dsn,
        fakeredis=not args.no_fakeredis,
        out=out,
        plot=plot,
        baseline_ref=baseline,
        command=command_line(argv),
        **{name: value(name) for name in DEFAULTS},  # type: ignore[arg-type]
    )


def redact(url: str) -> str:
    """Return a URL or DSN with any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user, colon, _ = auth.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def command_line(argv: list[str]) -> str:
    """Return the command that was run, passwords redacted."""
    shown = []
    for arg in argv:
        if arg.startswith("--redis-url=") or arg.startswith("--postgres-dsn="):
            name, _, url = arg.partition("=")
            arg = f"{name}={redact(url)}"
        elif "://" in arg:
            arg = redact(arg)
        shown.append(arg)
    return shlex.join(["python", "-m", "benchmarks", *shown])
