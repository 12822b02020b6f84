"""Section 5: filtered acquires on a large pool (``--filter-pool-size``, 100,000).

Proxy n has country AR when n % 100 == 0 (1%), UY when n % 100 == 50, else one of a few
European countries; source cycles datacenter/residential/mobile; the AR proxies sit within
a few km of Buenos Aires and the others in Europe; the port is 10000 + n % 50000. Each
filter below is timed in turn (acquire timed, then release), selectors cycling, so noise
hits every filter alike. ``matching`` is counted with pharox's own ``ProxyFilters.matches``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional
from uuid import UUID

from pharox import Proxy, ProxyFilters, ProxyProtocol, ProxyStatus, SelectorStrategy

from .redis_target import RedisTarget
from .scale import load_pool
from .settings import Settings
from .stats import Latencies

SELECTORS = tuple(SelectorStrategy)
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)
OTHER_COUNTRIES = ("DE", "FR", "NL", "PL", "ES", "IT", "SE", "CZ")
SOURCES = ("datacenter", "residential", "mobile")
BUENOS_AIRES = (-34.6037, -58.3816)
CONSUMER = "bench-filters"


def attributed_proxy(pool_id: UUID, n: int) -> Proxy:
    """A proxy with source, country, city, coordinates, isp and asn set."""
    if n % 100 == 0:
        country, city = "AR", "Buenos Aires"
        lat = BUENOS_AIRES[0] + (n % 7) * 0.01
        lon = BUENOS_AIRES[1] + (n % 5) * 0.01
    else:
        country = "UY" if n % 100 == 50 else OTHER_COUNTRIES[n % len(OTHER_COUNTRIES)]
        city = f"city-{n % 40}"
        lat, lon = 45.0 + (n % 90) * 0.1, 2.0 + (n % 130) * 0.1
    return Proxy(
        host=f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}",
        port=10000 + n % 50000,
        protocol=ProxyProtocol.HTTP,
        pool_id=pool_id,
        status=ProxyStatus.ACTIVE,
        max_concurrency=1,
        checked_at=BASE_TIME + timedelta(seconds=n),
        source=SOURCES[n % len(SOURCES)],
        country=country,
        city=city,
        latitude=lat,
        longitude=lon,
        isp=f"isp-{n % 20}",
        asn=64500 + n % 20,
    )


def round_port(proxy: Proxy) -> bool:
    """The Python predicate: ports divisible by 100 (1% of the pool)."""
    return proxy.port % 100 == 0


def filter_cases() -> list[tuple[str, Optional[ProxyFilters]]]:
    return [
        ("no filter (baseline)", None),
        ("equality: country=AR", ProxyFilters(country="AR")),
        (
            "nested: any_of(AR, UY), none_of(datacenter)",
            ProxyFilters(
                any_of=[ProxyFilters(country="AR"), ProxyFilters(country="UY")],
                none_of=[ProxyFilters(source="datacenter")],
            ),
        ),
        (
            "geo: 50 km around Buenos Aires",
            ProxyFilters(latitude=BUENOS_AIRES[0], longitude=BUENOS_AIRES[1], radius_km=50),
        ),
        ("Python predicate: port % 100 == 0", ProxyFilters(predicate=round_port)),
    ]


@dataclass
class FilterRow(Latencies):
    name: str
    matching: int  # proxies of the pool the filter matches
    latencies: list[float] = field(default_factory=list)
    hits: int = 0
    misses: int = 0
    errors: int = 0


@dataclass
class FiltersResult:
    pool_size: int
    bytes_per_proxy: float
    load_seconds: float
    rows: list[FilterRow]


def run_filters(
    settings: Settings, target: RedisTarget, say: Callable[[str], None]
) -> FiltersResult:
    size = settings.filter_pool_size
    with target.storage("filters") as storage:
        loaded, measured, proxies = load_pool(target, storage, size, attributed_proxy, keep=True)
        say(
            f"  {size:,} proxies with attributes: loaded in {measured.load_seconds:.2f} s, "
            f"{measured.bytes_per_proxy:,.0f} bytes/proxy"
        )
        cases = filter_cases()
        rows = [
            FilterRow(name, sum(1 for p in proxies if f is None or f.matches(p)))
            for name, f in cases
        ]
        manager = loaded.manager
        pool_name = loaded.pool.name
        for _, filters in cases:  # warm up
            lease = manager.acquire_proxy(pool_name, CONSUMER, filters=filters)
            if lease:
                manager.release_proxy(lease)
        for i in range(settings.filter_acquires):
            selector = SELECTORS[i % len(SELECTORS)]
            for row, (_, filters) in zip(rows, cases, strict=True):
                start = time.perf_counter()
                try:
                    lease = manager.acquire_proxy(
                        pool_name, CONSUMER, filters=filters, selector=selector
                    )
                except Exception:  # counted, never fatal
                    row.errors += 1
                    continue
                row.latencies.append(time.perf_counter() - start)
                if lease is None:
                    row.misses += 1
                    continue
                row.hits += 1
                manager.release_proxy(lease)
        for row in rows:
            say(
                f"  {row.name:<45} p50 {(row.p50 or 0) * 1e6:>7,.0f} us  "
                f"p99 {(row.p99 or 0) * 1e6:>7,.0f} us  hits {row.hits}/"
                f"{row.hits + row.misses + row.errors}"
            )
    return FiltersResult(size, measured.bytes_per_proxy, measured.load_seconds, rows)
