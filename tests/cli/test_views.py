"""What the commands show, in-process: tables, the stats view (with cool-downs), file formats."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pharox import ProxyPool, ProxyStatus

from pharox_redis import Outcome, OutcomePolicy, RedisProxyManager, RedisStorage
from pharox_redis.cli import proxy_files, stats
from pharox_redis.cli.ui import Table, plain_text

from ..helpers import make_proxy


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


def test_stats_shows_the_proxies_in_a_cool_down(make_storage: Callable[..., RedisStorage]) -> None:
    storage = make_storage(outcomes=OutcomePolicy(base_seconds=300))  # outlasts the test
    pool = ProxyPool(name="cooled")
    storage.save_pool(pool)
    storage.add_proxies_bulk([make_proxy(pool, n) for n in (1, 2)])
    reading = stats.read(storage, pool, None, 5)
    assert reading.cooling == 0
    assert "in cool-down 0" in plain_text(stats.view(reading, None))

    manager = RedisProxyManager(storage)
    leased = manager.acquire("cooled", "w")
    assert leased is not None
    manager.release_proxy(leased.lease, outcome=Outcome.failed())  # a real cool-down
    reading = stats.read(storage, pool, reading, 5)
    assert reading.cooling == 1 and reading.as_json()["cooling_proxies"] == 1
    assert reading.counters["available_proxies"] == 1  # the cooled one is not available
    assert "in cool-down 1" in plain_text(stats.view(reading, 1.0))
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
