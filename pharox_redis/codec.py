"""Conversions between pharox models and what pharox-redis stores.

A proxy is stored as three hash fields under its pool: a JSON *state* with every field a Lua
script reads or changes (status, max concurrency, sort keys, latency, filter attributes), a
msgpack *record* with what only Python reads (host, port, protocol, credentials), and its
lease count. Records we wrote ourselves are rebuilt without a second validation: with
:func:`builder`, which does what ``model_construct`` does for a complete set of fields at a
fraction of its cost, and with the ids that repeat (proxies, consumers) parsed once.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from datetime import datetime, timedelta, timezone
from os import urandom
from typing import Any, Callable, Optional, Sequence, TypeVar
from uuid import UUID, SafeUUID

import msgspec
from pharox import (
    HealthCheckResult,
    Lease,
    LeaseStatus,
    PoolStatsSnapshot,
    Proxy,
    ProxyCredentials,
    ProxyHealthRecord,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
)
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
# Microseconds from 0001-01-01 to the epoch: adding it makes every datetime non-negative,
# so an 18-digit zero-padded number sorts like the datetime (see ``checked_key``).
_CHECKED_OFFSET_US = 62_135_596_800 * 1_000_000


class ProxyState(msgspec.Struct, omit_defaults=True):
    """Everything Lua reads or changes about a proxy (JSON; keys are short, one per proxy).

    ``s`` status, ``m`` max concurrency (absent: unlimited), ``c`` checked_at sort key,
    ``f`` FIRST_AVAILABLE score, ``l``/``t`` latency (ms: the latest health check's, or
    the average of reported outcomes) and when it was set (us), ``x`` consecutive failures
    reported and ``k`` the end of a cool-down (us; ``lua/_outcome.lua`` keeps both), then
    the filter attributes. Numbers that must stay exact are strings.
    """

    s: str
    c: str
    f: str
    m: Optional[int] = None
    l: Optional[int] = None  # noqa: E741 - one-letter JSON keys keep every proxy small
    t: Optional[str] = None
    x: Optional[int] = None
    k: Optional[str] = None
    src: Optional[str] = None
    co: Optional[str] = None
    ci: Optional[str] = None
    isp: Optional[str] = None
    asn: Optional[str] = None
    lat: Optional[str] = None
    lon: Optional[str] = None


class ProxyRecord(msgspec.Struct, array_like=True):
    """What only Python reads about a proxy (msgpack)."""

    host: str
    port: int
    protocol: str
    user: Optional[str] = None
    password: Optional[str] = None


class LeaseRow(msgspec.Struct):
    """A lease record as ``lease.lua`` writes it (JSON)."""

    proxy: str
    consumer: str
    acquired: str
    expires: str
    released: Optional[str] = None


class HealthRow(msgspec.Struct):
    """A health record as ``health.lua`` writes it (JSON)."""

    id: str
    checked: str
    reachable: bool
    protocol: str
    after: str
    latency: Optional[int] = None
    before: Optional[str] = None
    error: Optional[str] = None


_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(ProxyState)
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(ProxyRecord)
_lease_decoder = msgspec.json.Decoder(LeaseRow)
_health_decoder = msgspec.json.Decoder(HealthRow)

# Filter attribute -> ProxyState key; filters.py compiles ProxyFilters to these keys.
FILTER_FIELDS = {"source": "src", "country": "co", "city": "ci", "isp": "isp"}

# Largest max_concurrency and latency_ms stored: Lua's cjson writes numbers with 14
# significant digits, so a larger integer would come back as a float (1e+14).
MAX_EXACT = 10**12


def to_us(moment: datetime) -> int:
    """Return microseconds since the epoch (a naive datetime is taken as UTC)."""
    if not isinstance(moment, datetime):
        raise ValueError(f"expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // _ONE_US


def from_us(us: int | str | bytes) -> datetime:
    """Return the UTC datetime for microseconds since the epoch."""
    return EPOCH + timedelta(0, 0, int(us))  # positional: half the cost of microseconds=


def checked_key(us: int) -> str:
    """Return checked_at as 18 digits that sort lexicographically like the datetime."""
    return f"{us + _CHECKED_OFFSET_US:018d}"


def text(value: bytes | str) -> str:
    """Return a reply value as str, whatever the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coordinate(value: Optional[float], name: str, limit: float) -> Optional[str]:
    if value is None:
        return None
    if not _number(value) or not math.isfinite(value) or abs(value) > limit:
        raise ValueError(f"{name} must be a finite number within ±{limit:g}, got {value!r}")
    return repr(float(value))


def latency_ms(value: Any) -> Optional[int]:
    """Return a health latency as whole milliseconds, or None.

    Raises
    ------
    ValueError
        Unless ``value`` is None or a number in ``0..MAX_EXACT`` (not NaN, not negative).

    """
    if value is None:
        return None
    if not _number(value) or not 0 <= value <= MAX_EXACT:
        raise ValueError(f"latency_ms must be a number of milliseconds in 0..{MAX_EXACT}")
    return int(value)


def _optional_text(value: Any, name: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str or None, got {type(value).__name__}")
    return value


def _host(proxy: Proxy) -> str:
    host = proxy.host
    if isinstance(host, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(host)
    if not isinstance(host, str) or not host or not host.isprintable() or " " in host:
        raise ValueError(
            f"proxy host must be a non-empty str without whitespace or control "
            f"characters, got {host!r}"
        )
    return host


def encode_proxy(proxy: Proxy) -> tuple[str, bytes, bytes]:
    """Return ``(id, state JSON, record msgpack)`` for a proxy, validating it first.

    Raises
    ------
    ValueError
        When a field holds a value pharox's model would reject (models are not
        re-validated on assignment), coordinates are not finite and in range, the host
        is empty or holds whitespace or control characters, or max_concurrency is above
        ``MAX_EXACT``.

    """
    if not isinstance(proxy, Proxy):
        raise ValueError(f"expected a pharox Proxy, got {type(proxy).__name__}")
    port = proxy.port
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535:
        raise ValueError(f"proxy port must be 1..65535, got {port!r}")
    mc = proxy.max_concurrency
    if mc is not None and (
        not isinstance(mc, int) or isinstance(mc, bool) or not 0 < mc <= MAX_EXACT
    ):
        raise ValueError(
            f"max_concurrency must be an integer in 1..{MAX_EXACT} or None (unlimited), got {mc!r}"
        )
    host = _host(proxy)
    status = ProxyStatus(proxy.status).value
    protocol = ProxyProtocol(proxy.protocol).value
    if not isinstance(proxy.id, UUID) or not isinstance(proxy.pool_id, UUID):
        raise ValueError("proxy id and pool_id must be UUIDs")
    if (proxy.latitude is None) != (proxy.longitude is None):
        raise ValueError("latitude and longitude must be set together")
    asn = proxy.asn
    if asn is not None and (not isinstance(asn, int) or isinstance(asn, bool)):
        raise ValueError(f"asn must be an integer or None, got {asn!r}")
    checked = to_us(proxy.checked_at)
    state = ProxyState(
        s=status,
        c=checked_key(checked),
        f=str(-checked),
        m=mc,
        src=_optional_text(proxy.source, "source"),
        co=_optional_text(proxy.country, "country"),
        ci=_optional_text(proxy.city, "city"),
        isp=_optional_text(proxy.isp, "isp"),
        asn=None if asn is None else str(asn),
        lat=_coordinate(proxy.latitude, "latitude", 90),
        lon=_coordinate(proxy.longitude, "longitude", 180),
    )
    creds = proxy.credentials
    if creds is not None and not (
        isinstance(creds, ProxyCredentials)
        and isinstance(creds.user, str)
        and isinstance(creds.password, str)
    ):
        raise ValueError("credentials must be a pharox ProxyCredentials with str user and password")
    record = ProxyRecord(
        host=host,
        port=port,
        protocol=protocol,
        user=creds.user if creds else None,
        password=creds.password if creds else None,
    )
    return str(proxy.id), _state_encoder.encode(state), _record_encoder.encode(record)


_PYDANTIC_SLOTS = (
    "__dict__",
    "__pydantic_fields_set__",
    "__pydantic_extra__",
    "__pydantic_private__",
)


def builder(cls: type[M]) -> Callable[[dict[str, Any]], M]:
    """Return a function building a ``cls`` from a dict of all its fields, in their order.

    For trusted values, as ``model_construct`` does, without its walk over every field's
    aliases and defaults: the dict becomes the model's ``__dict__``. When the model has
    anything ``model_construct`` would act on (aliases, extra or private attributes, a
    post-init hook), or pydantic's instance layout is not the one this knows, the function
    calls ``model_construct`` instead.
    """
    plain = (
        getattr(BaseModel, "__slots__", None) == _PYDANTIC_SLOTS
        and not cls.__pydantic_root_model__
        and not cls.__pydantic_post_init__
        and not cls.__private_attributes__
        and cls.model_config.get("extra") != "allow"
        and all(f.alias is None and f.validation_alias is None for f in cls.model_fields.values())
    )
    if not plain:
        return lambda values: cls.model_construct(**values)
    new = object.__new__
    put = object.__setattr__

    def build(values: dict[str, Any]) -> M:
        model = new(cls)
        put(model, "__dict__", values)
        put(model, "__pydantic_fields_set__", set(values))
        put(model, "__pydantic_extra__", None)
        put(model, "__pydantic_private__", None)
        return model

    return build


_build_proxy = builder(Proxy)
_build_lease = builder(Lease)
_build_credentials = builder(ProxyCredentials)
_PROTOCOLS = {member.value: member for member in ProxyProtocol}
_STATUSES = {member.value: member for member in ProxyStatus}
_IDS_LIMIT = 100_000
_ids: dict[Any, UUID] = {}


_V4_KEEP = ~(0xF000 << 64 | 0xC000 << 48) & ((1 << 128) - 1)  # all but version and variant
_V4_SET = 0x4000 << 64 | 0x8000 << 48  # version 4, RFC 4122 variant
_new = object.__new__
_put = object.__setattr__


def new_id() -> UUID:
    """Return a random (version 4) UUID, as ``uuid4()`` does, at half its cost.

    The lease id every acquire chooses before it sends anything: 16 bytes from
    ``os.urandom`` with the version and variant bits set, stored as ``UUID.__init__``
    stores them, without its argument checks.
    """
    uid = _new(UUID)
    _put(uid, "int", int.from_bytes(urandom(16), "big") & _V4_KEEP | _V4_SET)
    _put(uid, "is_safe", SafeUUID.unknown)
    return uid


def known_id(value: bytes | str) -> UUID:
    """Return the UUID a stored id stands for; ids that repeat are parsed once.

    For proxy and consumer ids, which come back in every lease; not for lease ids.
    """
    uid = _ids.get(value)
    if uid is None:
        uid = UUID(text(value))
        if len(_ids) >= _IDS_LIMIT:
            _ids.clear()
        _ids[value] = uid
    return uid


@functools.lru_cache(maxsize=65536)
def _parse_host(value: str) -> Any:
    """Return a host as an IP address object when it is one (cached: addresses repeat)."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return value


def decode_proxy(
    proxy_id: bytes | str, pool_id: UUID, state: bytes | str, count: Any, record: bytes
) -> Proxy:
    """Rebuild a pharox Proxy from its stored state, lease count and record."""
    st = _state_decoder.decode(state)
    rec = _record_decoder.decode(record)
    creds = None
    if rec.user is not None and rec.password is not None:
        creds = _build_credentials({"user": rec.user, "password": rec.password})
    return _build_proxy(
        {
            "id": known_id(proxy_id),
            "host": _parse_host(rec.host),
            "port": rec.port,
            "protocol": _PROTOCOLS.get(rec.protocol) or ProxyProtocol(rec.protocol),
            "pool_id": pool_id,
            "status": _STATUSES.get(st.s) or ProxyStatus(st.s),
            "checked_at": from_us(int(st.c) - _CHECKED_OFFSET_US),
            "credentials": creds,
            "source": st.src,
            "country": st.co,
            "city": st.ci,
            "latitude": None if st.lat is None else float(st.lat),
            "longitude": None if st.lon is None else float(st.lon),
            "isp": st.isp,
            "asn": None if st.asn is None else int(st.asn),
            "max_concurrency": st.m,
            "current_leases": int(count or 0),
        }
    )


def decode_lease(
    lease_id: UUID | bytes | str,
    raw: bytes | str,
    pool_id: UUID,
    pool_name: str,
    now_us: Optional[int] = None,
) -> Lease:
    """Rebuild a pharox Lease from its stored record.

    With ``now_us`` (the server clock), a lease past its deadline that no script has
    reclaimed yet is shown as it will be stored: released at its deadline.
    """
    row = _lease_decoder.decode(raw)
    released = row.released
    if released is None and now_us is not None and int(row.expires) <= now_us:
        released = row.expires
    return _build_lease(
        {
            "id": lease_id if isinstance(lease_id, UUID) else UUID(text(lease_id)),
            "proxy_id": known_id(row.proxy),
            "consumer_id": known_id(row.consumer),
            "pool_id": pool_id,
            "pool_name": pool_name,
            "status": LeaseStatus.ACTIVE if released is None else LeaseStatus.RELEASED,
            "acquired_at": from_us(row.acquired),
            "expires_at": from_us(row.expires),
            "released_at": None if released is None else from_us(released),
        }
    )


def server_time_us(reply: Sequence[Any]) -> int:
    """Return a ``TIME`` reply (seconds, microseconds) as microseconds."""
    return int(reply[0]) * 1_000_000 + int(reply[1])


def lease_released_at(raw: bytes | str) -> Optional[datetime]:
    """Return when a stored lease record was released, or None while it is active."""
    released = _lease_decoder.decode(raw).released
    return None if released is None else from_us(released)


def lease_consumer(raw: bytes | str) -> str:
    """Return the consumer id of a stored lease record."""
    return _lease_decoder.decode(raw).consumer


def decode_health(proxy_id: UUID, raw: bytes | str) -> ProxyHealthRecord:
    """Rebuild a pharox ProxyHealthRecord from its stored JSON."""
    row = _health_decoder.decode(raw)
    return ProxyHealthRecord.model_construct(
        id=UUID(row.id),
        proxy_id=proxy_id,
        checked_at=from_us(row.checked),
        reachable=row.reachable,
        latency_ms=row.latency,
        protocol=ProxyProtocol(row.protocol),
        status_before=None if row.before is None else ProxyStatus(row.before),
        status_after=ProxyStatus(row.after),
        error=row.error,
    )


def health_result(record: ProxyHealthRecord) -> HealthCheckResult:
    """Return the HealthCheckResult a stored health record stands for."""
    return HealthCheckResult.model_construct(
        proxy_id=record.proxy_id,
        status=record.status_after,
        latency_ms=record.latency_ms or 0,
        protocol=record.protocol,
        attempts=1,
        status_code=None,
        checked_at=record.checked_at,
        error_message=record.error,
    )


def stats_snapshot(pool_name: str, counters: Sequence[int]) -> PoolStatsSnapshot:
    """Build a PoolStatsSnapshot from the five pool counters."""
    total, active, available, leased, leases = counters
    return PoolStatsSnapshot.model_construct(
        pool_name=pool_name,
        total_proxies=total,
        active_proxies=active,
        available_proxies=available,
        leased_proxies=leased,
        total_leases=leases,
        collected_at=datetime.now(timezone.utc),
    )


def decode_pool(pool_id: UUID, name: bytes | str, description: Optional[bytes | str]) -> ProxyPool:
    """Rebuild a ProxyPool from its stored name and description."""
    return ProxyPool.model_construct(
        id=pool_id, name=text(name), description=None if description is None else text(description)
    )
