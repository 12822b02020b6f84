"""pharox's PostgresStorage for the benchmark, in a private schema dropped afterwards.

``pharox.run_leasing_benchmark`` seeds through ``add_pool`` / ``add_proxy``, which
PostgresStorage lacks: :class:`BenchPostgresStorage` maps them to ``save_pool`` /
``save_proxy``. Each run gets a schema of its own (``search_path``), so the benchmark's
fixed pool name never collides and nobody else's tables are touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from pharox import IStorage, Proxy, ProxyPool

from .settings import redact

INSTALL_HINT = "pip install -e '.[bench]' (sqlalchemy, psycopg, greenlet)"


def driver_dsn(dsn: str) -> str:
    """Use psycopg 3 unless the DSN names a driver (SQLAlchemy would pick psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if dsn.startswith(scheme):
            return "postgresql+psycopg://" + dsn[len(scheme) :]
    return dsn


def _engine(dsn: str, schema: Optional[str] = None) -> Any:
    from sqlalchemy import create_engine

    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if schema is not None:
        connect_args["options"] = f"-csearch_path={schema}"
    return create_engine(driver_dsn(dsn), connect_args=connect_args)


def probe(dsn: str) -> tuple[Optional[str], Optional[str]]:
    """Return (server version, None) when Postgres answers, else (None, why not)."""
    try:
        import pharox.storage.postgres  # noqa: F401  (needs sqlalchemy and greenlet)
        from sqlalchemy import text
    except ImportError as exc:
        return None, f"{exc}; install with {INSTALL_HINT}"
    try:
        engine = _engine(dsn)
        try:
            with engine.connect() as conn:
                version = str(conn.execute(text("SHOW server_version")).scalar())
        finally:
            engine.dispose()
    except Exception as exc:  # any driver or connection error means "unreachable"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"cannot connect to {redact(dsn)}: {type(exc).__name__}: {first_line}"
    return version, None


def bench_storage(engine: Any) -> IStorage:
    """Return a PostgresStorage on ``engine`` with ``add_pool`` and ``add_proxy``."""
    from pharox.storage.postgres import PostgresStorage

    class BenchPostgresStorage(PostgresStorage):
        """PostgresStorage with the ``add_pool``/``add_proxy`` that pharox's bootstrap uses."""

        def add_pool(self, pool: ProxyPool) -> None:
            self.save_pool(pool)

        def add_proxy(self, proxy: Proxy) -> None:
            self.save_proxy(proxy)

    return BenchPostgresStorage(engine)


@contextmanager
def postgres_storage(dsn: str) -> Iterator[IStorage]:
    """Yield a PostgresStorage on fresh tables in a private schema, dropped afterwards."""
    from pharox.storage.postgres.tables import metadata
    from sqlalchemy import text

    schema = f"pharox_bench_{uuid.uuid4().hex[:10]}"
    admin = _engine(dsn)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = _engine(dsn, schema)
    try:
        metadata.create_all(engine)
        yield bench_storage(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
