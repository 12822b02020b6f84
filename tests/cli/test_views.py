"""What the commands show, in-process: tables, the stats view (with cool-downs), file formats."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any, NamedTuple, Optional

import pytest
from pharox import PoolStatsSnapshot, ProxyPool, ProxyStatus

from pharox_redis import RedisStorage
from pharox_redis.cli import proxy_files, stats
from pharox_redis.cli.ui import Table, plain_text


def test_plain_tables_align_numbers_right_and_show_none_as_a_dash() -> None:
    table = Table("t", ("name", "n", "max"), [("a", 1, None), ("long-name", 20, 3)])
    assert table.plain() == [
        "t",
        "name        n  max",
        "a           1    -",
        "long-name  20    3",
    ]
    assert Table("empty", ("a", "b")).plain() == ["empty", "a  b", "(none)"]
    assert plain_text(["head", table]).splitlines()[:3] == ["head", "", "t"]


class FakeOutcomeStats(NamedTuple):
    stats: PoolStatsSnapshot
    cooling: int
    blocked: int


def test_stats_shows_cool_downs_where_the_storage_keeps_them(storage: RedisStorage) -> None:
    pool = ProxyPool(name="cooled")
    storage.save_pool(pool)
    reading = stats.read(storage, pool, None, 5)
    assert reading.cooling is None
    assert "in cool-down" not in plain_text(stats.view(reading, None))

    real = storage.get_pool_stats

    def get_outcome_stats(name: str) -> Optional[FakeOutcomeStats]:
        found = real(name)
        return None if found is None else FakeOutcomeStats(found, 2, 0)

    storage.get_outcome_stats = get_outcome_stats  # type: ignore[attr-defined]
    reading = stats.read(storage, pool, reading, 5)
    assert reading.cooling == 2 and reading.as_json()["cooling_proxies"] == 2
    shown = plain_text(stats.view(reading, 1.0))
    assert "in cool-down 2" in shown and "leases/s 0.0" in shown
    assert reading.consumers == Counter()


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("1.2.3.4:80", ("http", "1.2.3.4", 80, None, None)),
        (
            "socks5://a%3Ab:p%40ss%2F@Proxy.Example:1080",
            ("socks5", "proxy.example", 1080, "a:b", "p@ss/"),
        ),
        ("https://[2001:db8::7]:8443", ("https", "2001:db8::7", 8443, None, None)),
        ("u:p+q@10.0.0.1:3128/", ("http", "10.0.0.1", 3128, "u", "p+q")),
    ],
)
def test_the_lines_form_round_trips(line: str, fields: tuple[Any, ...]) -> None:
    parsed = proxy_files.parse(line + "\n", "lines", uuid.uuid4(), proxy_files.Defaults())
    assert parsed.errors == []
    ((_, proxy),) = parsed.proxies
    creds = proxy.credentials
    got = (
        proxy.protocol.value,
        str(proxy.host),
        proxy.port,
        creds.user if creds else None,
        creds.password if creds else None,
    )
    assert got == fields
    assert proxy.status == ProxyStatus.ACTIVE
    again = proxy_files.parse(
        proxy_files.to_url(proxy), "lines", uuid.uuid4(), proxy_files.Defaults()
    )
    assert proxy_files.to_fields(again.proxies[0][1]) == proxy_files.to_fields(proxy)


def test_formats_are_detected_from_the_name_or_the_content() -> None:
    assert proxy_files.detect("list.CSV", "1.2.3.4:80") == "csv"
    assert proxy_files.detect("-", ' [ "1.2.3.4:80" ]') == "json"
    assert proxy_files.detect("-", "Host,Port\n1.2.3.4,80\n") == "csv"
    assert proxy_files.detect("-", "proxy,country\n1.2.3.4:80,AR\n") == "csv"
    assert proxy_files.detect("-", "1.2.3.4:80\n") == "lines"


def test_defaults_and_duplicates() -> None:
    defaults = proxy_files.Defaults(ProxyStatus.INACTIVE, 3)
    text = "host,port,status,max_concurrency\n1.2.3.4,80,,\n1.2.3.4,81,active,1\n1.2.3.4,80,,\n"
    parsed = proxy_files.parse(text, "csv", uuid.uuid4(), defaults)
    assert parsed.errors == []
    assert parsed.duplicates == ["line 4 (same proxy as line 2)"]
    got = [(p.port, p.status.value, p.max_concurrency) for _, p in parsed.proxies]
    assert got == [(80, "inactive", 3), (81, "active", 1)]
