"""``import`` and ``export``: a thousand proxies, idempotent re-import, bad files, round trips."""

from __future__ import annotations

import json

import pytest

from pharox_redis import RedisStorage
from pharox_redis.cli.errors import ExitCode

from .conftest import Cli

pytestmark = pytest.mark.real_redis

THOUSAND = "".join(f"10.1.{i // 250}.{i % 250 + 1}:{8000 + i % 7}\n" for i in range(1000))
ATTRIBUTES = (
    "url,status,max_concurrency,country,city,latitude,longitude,isp,asn,source\n"
    "socks5://al%3Ace:p%40ss@10.2.0.1:1080,active,2,AR,Cordoba,-31.4,-64.2,Acme,64500,list-a\n"
    "http://10.2.0.2:3128,inactive,,US,,,,,,\n"
    "https://[2001:db8::7]:8443,banned,5,,,,,,,\n"
)


def proxies_of(storage: RedisStorage, pool: str) -> list[tuple[str, str, int, str]]:
    (found,) = [p for p in storage.list_pools() if p.name == pool]
    return sorted(
        (p.protocol.value, str(p.host), p.port, p.credentials.user if p.credentials else "")
        for p in storage.list_proxies(str(found.id))
    )


def test_a_thousand_proxies_imported_twice_are_a_thousand(cli: Cli, admin: RedisStorage) -> None:
    first = cli("import", "residential", "-", stdin=THOUSAND)
    assert first.code == ExitCode.OK, first.err
    assert first.out == (
        "imported 1000 proxies into pool 'residential' (created): 1000 new, 0 updated, 0 removed\n"
    )
    again = cli("import", "residential", "-", "--json", stdin=THOUSAND)
    assert again.code == ExitCode.OK, again.err
    assert again.json() | {"id": None} == {
        "pool": "residential",
        "id": None,
        "created": False,
        "format": "lines",
        "imported": 1000,
        "new": 0,
        "updated": 1000,
        "removed": 0,
        "duplicates_skipped": 0,
    }
    stats = admin.get_pool_stats("residential")
    assert stats is not None
    assert (stats.total_proxies, stats.active_proxies, stats.available_proxies) == (
        1000,
        1000,
        1000,
    )
    (pool,) = cli("pools", "--json").json()
    assert (pool["name"], pool["total_proxies"], pool["active_leases"]) == ("residential", 1000, 0)


def test_storage_saves_a_known_address_as_the_same_proxy(cli: Cli, admin: RedisStorage) -> None:
    """The storage's own identity (scheme, host, port, user): no second proxy for an address.

    The command line keeps the stored ids on re-import; this checks the storage itself, as a
    second importer that does not know those ids would save (``add_proxies_bulk``).
    """
    assert cli("import", "pool", "-", stdin="127.0.0.1:9001\nu:p@127.0.0.1:9002\n").code == 0
    from pharox import Proxy, ProxyProtocol, ProxyStatus

    (pool,) = admin.list_pools()
    admin.add_proxies_bulk(
        [
            Proxy(
                host="127.0.0.1",
                port=9001,
                protocol=ProxyProtocol.HTTP,
                pool_id=pool.id,
                status=ProxyStatus.ACTIVE,
            )
        ]
    )
    assert len(admin.list_proxies(str(pool.id))) == 2


def test_bad_files_write_nothing(
    cli: Cli, admin: RedisStorage, tmp_path: pytest.TempPathFactory
) -> None:
    bad_lines = "127.0.0.1:9001\nnot a proxy\n# a comment\n127.0.0.1:99999\nftp://127.0.0.1:21\n"
    done = cli("import", "fresh", "-", stdin=bad_lines)
    assert done.code == ExitCode.BAD_INPUT
    assert "Traceback" not in done.err
    assert done.err.splitlines() == [
        "error: stdin: line 2: 'not a proxy' is not [scheme://][user:password@]host:port",
        "error: stdin: line 4: '127.0.0.1:99999': Port out of range 0-65535",
        "error: stdin: line 5: unknown scheme 'ftp' (http, https, socks4 or socks5)",
        "error: stdin: 3 bad lines (lines); nothing was imported",
    ]
    assert admin.list_pools() == []  # not even the pool was created

    assert cli("import", "kept", "-", stdin="127.0.0.1:9001\n").code == ExitCode.OK
    cases = {
        "bad.csv": ("host,port,colour\n127.0.0.1,9001,red\n", "line 1: unknown column 'colour'"),
        "short.csv": (
            "host,port\n127.0.0.1,9001\n127.0.0.1,x\n",
            "line 3: port 'x' is not a number",
        ),
        "bad.json": ('[{"host": "127.0.0.1", "port": 9001},\n  oops]', "line 2: not JSON"),
        "items.json": ('["127.0.0.1:9002", 7]', "item 2: a proxy is a string or an object"),
        "creds.txt": ("user@127.0.0.1:9003\n", "line 1: password"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name  # type: ignore[operator]
        path.write_text(content)
        done = cli("import", "kept", str(path), "--replace")
        assert done.code == ExitCode.BAD_INPUT, (name, done)
        assert done.one_error_line().startswith(f"error: {path}: {expected}"), (name, done.err)
        assert "nothing was imported" in done.err
    assert proxies_of(admin, "kept") == [("http", "127.0.0.1", 9001, "")]  # --replace did not run

    missing = cli("import", "kept", str(tmp_path / "nosuch.txt"))  # type: ignore[operator]
    assert missing.code == ExitCode.BAD_INPUT
    assert "No such file or directory" in missing.one_error_line()


def test_export_import_round_trip_and_replace(cli: Cli, admin: RedisStorage) -> None:
    assert cli("import", "source", "-", "--format", "csv", stdin=ATTRIBUTES).code == ExitCode.OK
    as_json = cli("export", "source", "--json")
    assert as_json.code == ExitCode.OK
    rows = as_json.json()
    assert rows[0] == {
        "protocol": "socks5",
        "host": "10.2.0.1",
        "port": 1080,
        "username": "al:ce",
        "password": "p@ss",
        "status": "active",
        "max_concurrency": 2,
        "country": "AR",
        "city": "Cordoba",
        "latitude": -31.4,
        "longitude": -64.2,
        "isp": "Acme",
        "asn": 64500,
        "source": "list-a",
    }
    assert [r["status"] for r in rows] == ["active", "inactive", "banned"]
    for fmt in ("json", "csv", "lines"):
        text = cli("export", "source", "--format", fmt).out
        assert cli("import", f"copy-{fmt}", "-", stdin=text).code == ExitCode.OK  # detected
        copied = cli("export", f"copy-{fmt}", "--format", fmt).out
        assert copied == text, fmt
    assert proxies_of(admin, "copy-lines") == proxies_of(admin, "source")

    replaced = cli("import", "source", "-", "--replace", "--json", stdin="http://10.2.0.2:3128\n")
    assert replaced.code == ExitCode.OK
    assert (replaced.json()["updated"], replaced.json()["removed"]) == (1, 2)
    assert proxies_of(admin, "source") == [("http", "10.2.0.2", 3128, "")]
    exported = json.loads(cli("export", "source", "--format", "json").out)
    assert exported[0]["status"] == "active"  # the line gave none: --status's default
