"""The builders without a network: encodings, schemes, outcomes, the LRU, the lazy imports."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import urllib3
from pharox import Proxy, ProxyCredentials, ProxyProtocol

from pharox_redis import LeasedProxy, Outcome
from pharox_redis.http import (
    ClientCache,
    LeaseSettings,
    OutcomeRules,
    ProxyEndpoint,
    aiohttp_kwargs,
    httpx_proxy,
    requests_proxies,
    target_of,
    urllib3_manager,
)
from pharox_redis.http.extras import require
from pharox_redis.http.rules import worse


def proxy(protocol: ProxyProtocol = ProxyProtocol.HTTP, host: str = "10.0.0.1") -> Proxy:
    return Proxy(
        host=host,
        port=8080,
        protocol=protocol,
        pool_id=uuid.uuid4(),
        credentials=ProxyCredentials(user="bob smith", password="p@ss w:rd/%"),
    )


def test_credentials_are_percent_encoded_not_plus_quoted() -> None:
    ep = ProxyEndpoint.of(proxy())
    assert ep.url() == "http://bob%20smith:p%40ss%20w%3Ard%2F%25@10.0.0.1:8080"
    assert ep.url(credentials=False) == "http://10.0.0.1:8080"
    assert "bob+smith" in proxy().url  # pharox's quote_plus, which clients decode literally
    assert "p@ss" not in repr(ep) and "***" in repr(ep)


def test_an_endpoint_comes_from_a_leased_proxy_a_proxy_or_an_endpoint() -> None:
    p = proxy()
    ep = ProxyEndpoint.of(p)
    leased = LeasedProxy(lease=None, proxy=p)  # type: ignore[arg-type]
    assert ProxyEndpoint.of(leased) == ep == ProxyEndpoint.of(ep)
    with pytest.raises(ValueError, match="LeasedProxy"):
        ProxyEndpoint.of("http://10.0.0.1:8080")  # type: ignore[arg-type]


def test_socks_resolves_remotely_by_default_and_ipv6_is_bracketed() -> None:
    assert ProxyEndpoint.of(proxy(ProxyProtocol.SOCKS5)).url(credentials=False) == (
        "socks5h://10.0.0.1:8080"
    )
    assert ProxyEndpoint.of(proxy(ProxyProtocol.SOCKS4)).url(credentials=False) == (
        "socks4a://10.0.0.1:8080"
    )
    local = ProxyEndpoint.of(proxy(ProxyProtocol.SOCKS5)).url(credentials=False, remote_dns=False)
    assert local == "socks5://10.0.0.1:8080"
    assert ProxyEndpoint.of(proxy(host="::1")).url(credentials=False) == "http://[::1]:8080"


def test_the_proxy_authorization_header_is_urllib3s_value_in_canonical_case() -> None:
    ep = ProxyEndpoint.of(proxy())
    made = urllib3.util.make_headers(proxy_basic_auth="bob smith:p@ss w:rd/%")
    assert ep.proxy_headers() == {"Proxy-Authorization": made["proxy-authorization"]}
    manager = urllib3_manager(proxy())
    assert isinstance(manager, urllib3.ProxyManager)
    assert manager.proxy_headers == ep.proxy_headers()
    assert manager.proxy is not None and manager.proxy.auth is None  # not in the URL


def test_each_library_gets_its_own_spelling() -> None:
    socks = proxy(ProxyProtocol.SOCKS5)
    assert set(requests_proxies(socks)) == {"http", "https"}
    assert requests_proxies(socks)["https"].startswith("socks5h://bob%20smith:")
    assert httpx_proxy(socks).raw_auth == (b"bob smith", b"p@ss w:rd/%")
    with pytest.raises(ValueError, match="SOCKS4"):
        httpx_proxy(proxy(ProxyProtocol.SOCKS4))
    with pytest.raises(ValueError, match="aiohttp_connector"):
        aiohttp_kwargs(socks, "http://example.com/")
    login = ProxyEndpoint.of(proxy()).proxy_headers()
    assert aiohttp_kwargs(proxy(), "http://example.com/")["headers"] == login
    assert aiohttp_kwargs(proxy(), "https://example.com/")["proxy_headers"] == login


def test_outcomes_from_statuses_and_a_callers_rule() -> None:
    rules = OutcomeRules(blocked=lambda response: response == "captcha")
    assert rules.judge(200, "", "a.example", 12.5) == Outcome.ok(12.5)
    assert rules.judge(500, "", "a.example", 1) == Outcome.ok(1)
    assert rules.judge(403, "", "A.example", 1) == Outcome.blocked("a.example")
    assert rules.judge(429, "", "a.example", 1) == Outcome.blocked("a.example")
    assert rules.judge(200, "captcha", "a.example", 1) == Outcome.blocked("a.example")
    assert rules.judge(407, "", "a.example", 1) == Outcome.failed()
    assert worse(worse(Outcome.ok(1), Outcome.blocked("a.example")), Outcome.ok(2)).kind == (
        "blocked"
    )
    assert worse(Outcome.blocked("a.example"), Outcome.failed()) == Outcome.failed()
    assert worse(Outcome.ok(1), Outcome.ok(2)) == Outcome.ok(2)
    assert target_of("https://User@Example.com:8443/x") == "example.com"
    with pytest.raises(ValueError, match="no host"):
        target_of("/relative")
    with pytest.raises(ValueError, match="max_tries"):
        LeaseSettings("pool", max_tries=0)


def test_the_client_cache_keeps_the_recently_used_and_closes_none_in_use() -> None:
    cache: ClientCache[str] = ClientCache(2)
    a, closing = cache.borrow("a", lambda: "A")
    assert (a, closing) == ("A", [])
    assert cache.give_back("a", a) == []
    cache.give_back("b", cache.borrow("b", lambda: "B")[0])
    c, closing = cache.borrow("c", lambda: "C")  # "a" is the least recently used, idle
    assert closing == ["A"]
    b, closing = cache.borrow("b", lambda: "B2")  # kept: reused, not built again
    assert (b, closing, cache.made) == ("B", [], 3)
    d, closing = cache.borrow("d", lambda: "D")  # evicts "c", in use: not closed yet
    assert closing == []
    assert cache.give_back("c", c) == ["C"]  # closed by its last borrower
    assert cache.give_back("b", b) == []  # kept
    assert cache.clear() == ["B"]  # "d" is still borrowed
    assert cache.give_back("d", d) == ["D"]
    with pytest.raises(ValueError):
        ClientCache(0)


def test_importing_the_package_imports_no_client_library() -> None:
    code = (
        "import sys, pharox_redis, pharox_redis.http; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'urllib3', 'requests', 'aiohttp', 'aiohttp_socks', 'celery', 'socks'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_library_names_the_extra_to_install() -> None:
    with pytest.raises(ImportError, match=r'pip install "pharox-redis\[aiohttp\]"'):
        require("no_such_module_for_pharox_redis", "aiohttp")
