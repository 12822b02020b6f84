"""Security: a least-privilege ACL user, and TLS with ``rediss://``, on private redis-servers.

``ACL_RULE`` is the rule the README documents. It lists exactly the commands the adapter
needs: the ones it sends (EVALSHA, SCRIPT LOAD after NOSCRIPT, MULTI/EXEC, the plain reads
and writes in ``core.py`` and ``audit.py``, the PING of redis-py's health check) and the
ones its Lua scripts run, since Redis 7 checks a script's ``redis.call`` against the ACL of
the user who runs it. The tests run the whole API as a user with that rule, and check on
the server (``INFO commandstats``, ``ACL LOG``) that every command in the rule was used and
that nothing was refused. HELLO and AUTH are always allowed, so the rule does not list
them.

The TLS tests make a throwaway CA, server and client certificate with the ``openssl`` CLI
and start ``redis-server`` with a TLS-only port. Without ``openssl``, or with a
``redis-server`` built without TLS, they are skipped (an error under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest
import redis
from pharox import (
    Consumer,
    HealthCheckResult,
    ProxyFilters,
    ProxyHealthRecord,
    ProxyManager,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
    SelectorStrategy,
)
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    NotReplicatedError,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.server import RedisServer, free_port, redis_server_binary

from .helpers import make_proxy

pytestmark = pytest.mark.real_redis

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "lua"

# The documented rule (README, "Guarantees"): keys under the prefix, no pub/sub channels,
# and only these commands. Line 1: sent by the client only; line 2: sent by the client and
# run by the Lua scripts; line 3: run by the Lua scripts only. SCAN is for audit() of every
# pool, WAIT for wait_replicas. Keep it identical to the README (test_docs_show_the_rule).
ACL_RULE = (
    "~pharox:* resetchannels -@all"
    " +evalsha +script|load +multi +exec +ping +scan +wait +unlink +hsetnx +hscan +zrevrange"
    " +exists +set +hget +hgetall +hkeys +hexists +hmget +hset +hdel +zadd +zrange +zrem +time"
    " +del +get +hincrby +zcard +zlexcount +zrangebyscore +zremrangebyrank +zscore +hlen"
)
USER = "pharox-worker"
PASSWORD = "s3cret-pass"
ALWAYS_ALLOWED = {"hello", "auth"}  # connection handshake; Redis never refuses these
NO_RETRY = Retry(NoBackoff(), 0)  # a refused connection fails at once (from_url retries 3x)


def rule_commands(rule: str = ACL_RULE) -> set[str]:
    """Return the commands a rule allows (its ``+command`` words)."""
    return {word[1:] for word in rule.split() if word.startswith("+")}


def lua_commands() -> set[str]:
    """Return every command the Lua scripts run (``redis.call`` / ``redis.pcall``)."""
    source = "\n".join(path.read_text() for path in sorted(LUA_DIR.glob("*.lua")))
    calls = re.findall(r"redis\.p?call\(([^,)]*)", source)
    names = {call.strip().strip("'\"").lower() for call in calls}
    assert all(re.fullmatch(r"[a-z]+", name) for name in names), names  # no computed names
    return names


def plain_commands() -> set[str]:
    """Return every plain command the library sends (``Command(("NAME", ...))``)."""
    source = "\n".join(path.read_text() for path in sorted((ROOT / "pharox_redis").rglob("*.py")))
    return {name.lower() for name in re.findall(r'Command\(\(\s*"(\w+)"', source)}


def command_counts(admin: redis.Redis) -> dict[str, int]:
    """Return calls + rejected calls per command since the last CONFIG RESETSTAT."""
    stats: dict[str, Any] = admin.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"]) + int(v.get("rejected_calls", 0))
        for name, v in stats.items()
    }


def acl_log(admin: redis.Redis) -> list[Any]:
    return list(admin.execute_command("ACL", "LOG"))


def setinfo_rule() -> str:
    """Return what the README says to add on Redis 7.2+, where redis-py sends CLIENT SETINFO.

    Redis 7.0 does not know that subcommand (and refuses a rule naming it); redis-py gets
    an error there and ignores it, as it ignores a refusal.
    """
    binary = redis_server_binary()
    assert binary is not None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"v=(\d+)\.(\d+)", out.stdout)
    assert found is not None, out.stdout
    return " +client|setinfo" if (int(found[1]), int(found[2])) >= (7, 2) else ""


# ---------------------------------------------------------------------------------- ACL


class AclServer(NamedTuple):
    server: RedisServer
    admin: redis.Redis
    url: str  # redis://USER:PASSWORD@127.0.0.1:port/0
    rule: str  # ACL_RULE, plus +client|setinfo on Redis 7.2+


@pytest.fixture(scope="module")
def acl_server() -> Iterator[AclServer]:
    """A private server with the restricted user; the admin client is the default user."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    with RedisServer(tcp=True) as server, redis.Redis.from_url(server.url) as admin:
        rule = ACL_RULE + setinfo_rule()
        admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *rule.split())
        url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"
        yield AclServer(server, admin, url, rule)


@pytest.fixture
def admin(acl_server: AclServer) -> redis.Redis:
    """The default user's client, with the server's stats and ACL log reset."""
    acl_server.admin.execute_command("ACL", "LOG", "RESET")
    acl_server.admin.config_resetstat()
    return acl_server.admin


def test_rule_allows_every_command_the_code_sends_or_the_scripts_run() -> None:
    """A static check: it also covers paths the API flow below may not reach."""
    scripted, sent = lua_commands(), plain_commands()
    assert {"hget", "zadd", "time"} <= scripted and {"hgetall", "scan", "unlink"} <= sent
    assert scripted | sent <= rule_commands()
    assert "eval" not in rule_commands()  # scripts go out as EVALSHA only


def test_docs_show_the_rule() -> None:
    """The README documents this very rule."""
    text = " ".join((ROOT / "README.md").read_text().split())
    assert ACL_RULE in text, "document ACL_RULE in the README"


def sync_flow(url: str, admin: redis.Redis) -> None:
    """Every storage and manager operation, as the restricted user; checks the results."""
    # health_check_interval: redis-py PINGs a connection idle longer than this before using
    # it (off by default with from_url); a tiny one makes the PING happen in this short test.
    storage = RedisStorage.from_url(url, health_check_interval=0.001, lease_retention_seconds=60)
    try:
        pool = ProxyPool(name="acl")
        storage.save_pool(pool)
        storage.save_pool(ProxyPool(id=pool.id, name="acl", description="least privilege"))
        other = ProxyPool(name="acl-other")
        storage.add_pool(other)
        proxies = [make_proxy(pool, n, max_concurrency=2, country="AR") for n in range(4)]
        assert storage.add_proxies_bulk(proxies) == 4
        storage.save_proxy(make_proxy(other, 10))
        storage.add_consumer(Consumer(name="audit-consumer"))
        assert {p.name for p in storage.list_pools()} == {"acl", "acl-other"}
        assert storage.get_pool(str(pool.id)).description == "least privilege"
        assert len(storage.list_proxies(str(pool.id))) == 4
        assert storage.get_proxy(str(proxies[0].id)).host == proxies[0].host

        # health: status, latency history (trimmed), the latest result
        now = datetime.now(timezone.utc)
        for n, proxy in enumerate(proxies):
            storage.apply_health_check_result(
                HealthCheckResult(
                    proxy_id=proxy.id,
                    status=ProxyStatus.ACTIVE,
                    latency_ms=50 - n,
                    protocol=ProxyProtocol.HTTP,
                    checked_at=now,
                )
            )
        storage.save_health_record(
            ProxyHealthRecord(
                proxy_id=proxies[0].id,
                checked_at=now - timedelta(seconds=1),
                reachable=True,
                latency_ms=60,
                protocol=ProxyProtocol.HTTP,
                status_after=ProxyStatus.ACTIVE,
            )
        )
        assert len(storage.list_health_records(proxies[0].id)) == 2
        last = storage.get_last_health_result(proxies[0].id)
        assert last is not None and last.latency_ms == 50

        # RedisProxyManager: every selector, filters in Lua and in Python, renew, release
        manager = RedisProxyManager(storage)
        held = []
        # ROUND_ROBIN twice: the second one starts after the cursor the first one stored
        for selector in (*SelectorStrategy, SelectorStrategy.ROUND_ROBIN):
            leased = manager.acquire("acl", "worker", 30, ProxyFilters(country="AR"), selector)
            assert leased is not None, selector
            held.append(leased)
        free = next(p for p in storage.list_proxies(str(pool.id)) if p.current_leases < 2)
        picky = ProxyFilters(predicate=lambda p: p.id == free.id)  # decided in Python
        predicate_lease = manager.acquire_proxy("acl", "worker", 30, filters=picky)
        assert predicate_lease is not None and predicate_lease.proxy_id == free.id
        manager.renew_lease(held[0], 60)
        for leased in held:
            manager.release_proxy(leased)
        manager.release_proxy(predicate_lease)
        with manager.with_proxy("acl", "worker", 3, keep_alive=True) as kept:
            assert kept is not None
        assert storage.get_pool_stats("acl") is not None

        # pharox's stock ProxyManager on the same storage
        stock = ProxyManager(storage)
        lease = stock.acquire_proxy("acl", "stock", selector=SelectorStrategy.ROUND_ROBIN)
        assert lease is not None
        assert storage.get_lease(str(lease.id)) is not None
        assert storage.list_leases()
        stock.release_proxy(lease)

        # expiry: reclaimed by cleanup, and by the next acquire of the pool
        storage.create_lease(proxies[1], "short", 0.05)
        manager.acquire_proxy("acl-other", "short", 0.05)
        time.sleep(0.1)
        assert manager.cleanup_expired_leases() >= 1
        storage.create_lease(proxies[1], "short", 0.05)
        time.sleep(0.1)
        assert manager.acquire("acl", "worker") is not None

        # wait_replicas: WAIT after each lease; no replica here, so the lease is given back
        replicated = RedisStorage.from_url(url, wait_replicas=1, wait_timeout=0.01)
        try:
            with pytest.raises(NotReplicatedError):
                RedisProxyManager(replicated).acquire("acl", "worker")
        finally:
            replicated.client.close()

        # audit, then scripts lost (restart, failover, SCRIPT FLUSH): SCRIPT LOAD again
        assert storage.audit().clean
        assert storage.audit("acl", repair=True).clean
        admin.script_flush()
        assert manager.acquire("acl", "worker") is not None

        storage.delete_proxy(str(proxies[2].id))
        storage.delete_pool(str(other.id))
        storage.delete_pool(str(pool.id))
        assert storage.list_pools() == []
    finally:
        storage.client.close()


async def async_flow(url: str) -> None:
    """The asyncio storage and manager, as the restricted user."""
    storage = AsyncRedisStorage.from_url(url, prefix="pharox:async")
    try:
        pool = ProxyPool(name="acl-async")
        await storage.save_pool(pool)
        await storage.add_proxies_bulk([make_proxy(pool, n) for n in range(3)])
        manager = AsyncRedisProxyManager(storage)
        async with manager.with_proxy("acl-async", "worker", 3, keep_alive=True) as leased:
            assert leased is not None
            await manager.renew_lease(leased, 10)
        lease = await manager.acquire_proxy("acl-async", "worker", 0.05)
        assert lease is not None
        await asyncio.sleep(0.1)
        assert await manager.cleanup_expired_leases() == 1
        assert len(await storage.list_proxies(str(pool.id))) == 3
        await storage.delete_pool(str(pool.id))
    finally:
        await storage.aclose()


def test_whole_api_runs_as_least_privilege_user(acl_server: AclServer, admin: redis.Redis) -> None:
    sync_flow(acl_server.url, admin)
    asyncio.run(async_flow(acl_server.url))

    used = set(command_counts(admin)) - {"config|resetstat", "script|flush"}
    assert acl_log(admin) == []  # nothing was refused, not even an error redis-py swallows
    assert used - ALWAYS_ALLOWED == rule_commands(acl_server.rule)  # each one is needed
    assert all(key.startswith(b"pharox:") for key in admin.keys("*"))


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("ACL", "LIST"),
        ("SCRIPT", "FLUSH"),
        ("EVAL", "return 1", "0"),
        ("SHUTDOWN",),
        ("SELECT", "1"),
        ("SUBSCRIBE", "pharox:events"),
        ("GET", "other:key"),
        ("SET", "other:key", "1"),
        ("DEL", "other:key"),
        ("HGETALL", "pharox"),  # the prefix needs its ':'
    ],
    ids=lambda c: " ".join(c),
)
def test_restricted_user_is_refused(
    acl_server: AclServer, admin: redis.Redis, command: tuple[str, ...]
) -> None:
    admin.set("other:key", "kept")
    with redis.Redis.from_url(acl_server.url) as client, pytest.raises(NoPermissionError):
        client.execute_command(*command)
    assert admin.get("other:key") == b"kept"
    assert len(acl_log(admin)) == 1
    admin.delete("other:key")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("return redis.call('SET', 'other:key', 'x')", "pharox:x"),  # a key outside the prefix
        ("return redis.call('SET', KEYS[1], 'x')", "other:key"),  # declared in KEYS
        ("return redis.call('FLUSHALL')", "pharox:x"),  # a command outside the rule
        ("return redis.call('LPUSH', KEYS[1], 'x')", "pharox:x"),  # even on its own keys
    ],
)
def test_scripts_run_with_the_users_permissions(
    acl_server: AclServer, admin: redis.Redis, body: str, key: str
) -> None:
    admin.set("other:key", "kept")
    with redis.Redis.from_url(acl_server.url) as client:
        sha = client.script_load(body)  # loading is allowed; running checks each command
        with pytest.raises(redis.ResponseError, match=r"can't access|can't run|no permissions"):
            client.evalsha(sha, 1, key)
    assert admin.get("other:key") == b"kept"
    assert acl_log(admin)
    admin.delete("other:key")


def test_storage_with_another_prefix_is_refused(acl_server: AclServer, admin: redis.Redis) -> None:
    storage = RedisStorage.from_url(acl_server.url, prefix="other")
    try:
        with pytest.raises(RedisStorageError) as caught:
            storage.save_pool(ProxyPool(name="outside"))
        assert isinstance(caught.value.__cause__, NoPermissionError)
    finally:
        storage.client.close()
    assert admin.keys("other:*") == []


def test_rule_loads_from_an_acl_file(tmp_path: Path) -> None:
    """The ACL-file form of the rule, as the README shows it, loads and works."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    acl_file = tmp_path / "users.acl"
    worker = f"user {USER} on >{PASSWORD} {ACL_RULE}{setinfo_rule()}"
    acl_file.write_text(f"user default on nopass ~* &* +@all\n{worker}\n")
    with RedisServer(tcp=True, extra=("--aclfile", str(acl_file))) as server:
        storage = RedisStorage.from_url(f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0")
        try:
            pool = ProxyPool(name="from-file")
            storage.save_pool(pool)
            storage.save_proxy(make_proxy(pool))
            with RedisProxyManager(storage).with_proxy("from-file") as leased:
                assert leased is not None
        finally:
            storage.client.close()
        with redis.Redis.from_url(server.url) as admin:
            assert acl_log(admin) == []
            users = admin.execute_command("ACL", "LIST")
            line = next(u.decode() for u in users if u.decode().startswith(f"user {USER} "))
            assert "~pharox:*" in line and "+evalsha" in line


# ---------------------------------------------------------------------------------- TLS


class Certs(NamedTuple):
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _skip_or_fail(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(directory: Path, name: str, serial: int, usage: str, san: str = "") -> None:
    """Make ``name.key`` and ``name.crt``, signed by ``ca.key``, for ``usage``."""
    ext = directory / f"{name}.ext"
    lines = [
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature, keyEncipherment",
        f"extendedKeyUsage = {usage}",
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
    ]
    if san:
        lines.append(f"subjectAltName = {san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=pharox-test-{name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(serial), "-days", "2",
        "-extfile", ext.name, "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        _skip_or_fail(
            "the openssl CLI is not on PATH: the TLS tests make their certificates with it"
        )
    directory = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=pharox-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _issue(directory, "server", 2, "serverAuth", san="IP:127.0.0.1")
    _issue(directory, "client", 3, "clientAuth")
    return Certs(
        *(directory / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key"))
    )


class TlsServer(NamedTuple):
    server: RedisServer
    port: int  # the TLS-only port; plain TCP is off, the unix socket stays for readiness


def start_tls_server(certs: Certs, *, auth_clients: bool) -> TlsServer:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    port = free_port()
    options = {
        "--tls-port": str(port),
        "--tls-cert-file": str(certs.server_cert),
        "--tls-key-file": str(certs.server_key),
        "--tls-ca-cert-file": str(certs.ca),
        "--tls-auth-clients": "yes" if auth_clients else "no",
    }
    server = RedisServer(extra=tuple(arg for pair in options.items() for arg in pair))
    try:
        server.start()
    except RuntimeError as exc:
        server.close()
        _skip_or_fail(f"redis-server did not start with TLS (built without it?): {exc}")
    return TlsServer(server, port)


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[TlsServer]:
    """A private server whose only TCP port is TLS (server certificate only)."""
    started = start_tls_server(certs, auth_clients=False)
    yield started
    started.server.close()


def lease_cycle(storage: RedisStorage, pool_name: str) -> None:
    """Save a pool and a proxy, acquire and release through RedisProxyManager."""
    pool = ProxyPool(name=pool_name)
    storage.save_pool(pool)
    storage.save_proxy(make_proxy(pool, max_concurrency=1))
    manager = RedisProxyManager(storage)
    leased = manager.acquire(pool_name, "tls-worker", 30)
    assert leased is not None and leased.url == "http://10.0.0.1:8000"
    assert manager.acquire(pool_name, "tls-worker", 30) is None  # max_concurrency=1: held
    manager.release_proxy(leased)
    stats = storage.get_pool_stats(pool_name)
    assert stats is not None and stats.total_leases == 0
    storage.delete_pool(str(pool.id))


def test_rediss_with_the_ca_as_option(tls_server: TlsServer, certs: Certs) -> None:
    storage = RedisStorage.from_url(
        f"rediss://127.0.0.1:{tls_server.port}/0", ssl_ca_certs=str(certs.ca), prefix="tls"
    )
    try:
        pool = storage.client.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection)
        assert pool.connection_kwargs["ssl_ca_certs"] == str(certs.ca)  # from_url passed it on
        lease_cycle(storage, "tls-option")
    finally:
        storage.client.close()


def test_rediss_with_the_ca_in_the_url(tls_server: TlsServer, certs: Certs) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/0?ssl_cert_reqs=required&ssl_ca_certs={certs.ca}"
    storage = RedisStorage.from_url(url)
    try:
        lease_cycle(storage, "tls-query")
    finally:
        storage.client.close()


def test_async_rediss(tls_server: TlsServer, certs: Certs) -> None:
    async def cycle() -> None:
        storage = AsyncRedisStorage.from_url(
            f"rediss://127.0.0.1:{tls_server.port}/0", ssl_ca_certs=str(certs.ca)
        )
        try:
            pool = ProxyPool(name="tls-async")
            await storage.save_pool(pool)
            await storage.save_proxy(make_proxy(pool))
            manager = AsyncRedisProxyManager(storage)
            leased = await manager.acquire("tls-async", "tls-worker", 30)
            assert leased is not None
            await manager.release_proxy(leased)
            await storage.delete_pool(str(pool.id))
        finally:
            await storage.aclose()
        wrong_name = AsyncRedisStorage.from_url(
            f"rediss://localhost:{tls_server.port}/0",
            ssl_ca_certs=str(certs.ca),
            retry=AsyncRetry(NoBackoff(), 0),
        )
        try:
            with pytest.raises(RedisStorageError, match="Hostname mismatch"):
                await wrong_name.list_pools()
        finally:
            await wrong_name.aclose()

    asyncio.run(cycle())


@pytest.mark.parametrize(
    ("url", "with_ca", "error"),
    [
        pytest.param("rediss://127.0.0.1:{port}/0", False, "CERTIFICATE_VERIFY_FAILED", id="no-ca"),
        # the certificate names 127.0.0.1 only
        pytest.param("rediss://localhost:{port}/0", True, "Hostname mismatch", id="wrong-name"),
        pytest.param("redis://127.0.0.1:{port}/0", False, "reading|reset|closed", id="plain-tcp"),
    ],
)
def test_tls_port_refuses(
    tls_server: TlsServer, certs: Certs, url: str, with_ca: bool, error: str
) -> None:
    options: dict[str, Any] = {"retry": NO_RETRY}
    if with_ca:
        options["ssl_ca_certs"] = str(certs.ca)
    storage = RedisStorage.from_url(url.format(port=tls_server.port), **options)
    try:
        with pytest.raises(RedisStorageError, match=error):
            storage.list_pools()
    finally:
        storage.client.close()


def test_mutual_tls(certs: Certs) -> None:
    started = start_tls_server(certs, auth_clients=True)
    url = f"rediss://127.0.0.1:{started.port}/0"
    try:
        storage = RedisStorage.from_url(
            url,
            ssl_ca_certs=str(certs.ca),
            ssl_certfile=str(certs.client_cert),
            ssl_keyfile=str(certs.client_key),
        )
        try:
            lease_cycle(storage, "mtls")
        finally:
            storage.client.close()
        anonymous = RedisStorage.from_url(url, ssl_ca_certs=str(certs.ca), retry=NO_RETRY)
        try:
            with pytest.raises(RedisStorageError, match=r"(?i)ssl|eof|certificate"):
                anonymous.list_pools()
        finally:
            anonymous.client.close()
    finally:
        started.server.close()
