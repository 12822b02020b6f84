"""TLS with ``rediss://`` on a private redis-server with a TLS-only port.

The tests make a throwaway CA, server and client certificate with the ``openssl`` CLI and
start ``redis-server`` with a TLS-only port. Without ``openssl``, or with a ``redis-server``
built without TLS, they are skipped (an error under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest
import redis
from pharox import ProxyPool
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from pharox_redis import (
    AsyncRedisProxyManager,
    AsyncRedisStorage,
    RedisProxyManager,
    RedisStorage,
    RedisStorageError,
)
from pharox_redis.server import RedisServer, free_port, redis_server_binary

from ..helpers import IN_CI, make_proxy

pytestmark = pytest.mark.real_redis


NO_RETRY = Retry(NoBackoff(), 0)  # a refused connection fails at once (from_url retries 3x)


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
        assert isinstance(storage.client, redis.Redis)
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
