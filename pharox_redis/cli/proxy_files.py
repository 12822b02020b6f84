"""Proxy lists as files: reading them for ``import``, writing them for ``export``.

Three formats, the same fields:

* ``lines``: one proxy per line, ``[scheme://][user:password@]host:port`` (scheme ``http``
  when left out; ``[::1]:8080`` for IPv6; user and password percent-encoded where they hold
  ``:``, ``@`` or ``/``); blank lines and lines starting with ``#`` are skipped.
* ``csv``: a header naming the columns, then one proxy per row. Columns: ``url`` (a proxy in
  the lines form) or ``host`` and ``port`` with ``protocol``, ``username``, ``password``;
  then any of ``status``, ``max_concurrency``, ``country``, ``city``, ``latitude``,
  ``longitude``, ``isp``, ``asn``, ``source``. An empty cell is no value.
* ``json``: a list whose items are a proxy in the lines form or an object with the columns
  of the CSV form as keys.

Every bad line is reported with its number (its item number in JSON) before anything is
written. ``export`` writes the same formats, so its output imports back to the same pool:
lines carry the address and credentials only, CSV and JSON every field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote, unquote, urlsplit
from uuid import UUID

import pydantic
from pharox import Proxy, ProxyCredentials, ProxyProtocol, ProxyStatus

from .. import codec

FORMATS = ("lines", "csv", "json")
COLUMNS = (
    "protocol",
    "host",
    "port",
    "username",
    "password",
    "status",
    "max_concurrency",
    "country",
    "city",
    "latitude",
    "longitude",
    "isp",
    "asn",
    "source",
)
ALIASES = {"scheme": "protocol", "user": "username", "proxy": "url"}
INTEGERS = ("port", "max_concurrency", "asn")
FLOATS = ("latitude", "longitude")


@dataclass
class Defaults:
    """Values for fields a file leaves out."""

    status: ProxyStatus = ProxyStatus.ACTIVE
    max_concurrency: Optional[int] = None


@dataclass
class Parsed:
    """What a file holds: proxies by where they were found, and each bad line's message."""

    proxies: list[tuple[str, Proxy]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def detect(name: str, text: str) -> str:
    """Return the format of a file from its name's suffix, else from its content."""
    lowered = name.lower()
    for fmt, suffixes in (("csv", (".csv",)), ("json", (".json",)), ("lines", (".txt",))):
        if lowered.endswith(suffixes):
            return fmt
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    first = stripped.partition("\n")[0].lower()
    header = {ALIASES.get(c.strip(), c.strip()) for c in first.split(",")}
    if "," in first and ({"url", "host"} & header):
        return "csv"
    return "lines"


def parse(text: str, fmt: str, pool_id: UUID, defaults: Defaults) -> Parsed:
    """Read every proxy of a file, collecting an error per bad line instead of stopping.

    Parameters
    ----------
    text:
        The file's content.
    fmt:
        One of :data:`FORMATS`.
    pool_id:
        The pool the proxies go to.
    defaults:
        Status and max concurrency for proxies whose line does not give them.

    Returns
    -------
    Parsed
        The proxies (each with where it was found, ``line 3`` or ``item 3``), every error
        (``line 3: port 99999 out of range``) and the duplicates skipped (a proxy already
        found earlier in the file, by scheme, host, port and user).

    """
    out = Parsed()
    seen: dict[tuple[str, str, int, str], str] = {}
    for where, item in _items(text, fmt, out.errors):
        try:
            proxy = build(item, pool_id, defaults)
        except ValueError as exc:
            out.errors.append(f"{where}: {exc}")
            continue
        key = identity(proxy)
        if key in seen:
            out.duplicates.append(f"{where} (same proxy as {seen[key]})")
            continue
        seen[key] = where
        out.proxies.append((where, proxy))
    return out


def _items(text: str, fmt: str, errors: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(where, fields)`` per proxy entry of a file; malformed entries go to errors."""
    items: list[tuple[str, dict[str, Any]]] = []
    if fmt == "lines":
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                items.append((f"line {number}", {"url": stripped}))
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in reader.fieldnames or []]
        unknown = [n for n in names if n not in COLUMNS and n != "url"]
        if unknown or not ({"url", "host"} & set(names)):
            why = f"unknown column {unknown[0]!r}" if unknown else "no 'url' or 'host' column"
            errors.append(f"line 1: {why} (columns: url or {', '.join(COLUMNS)})")
            return []
        reader.fieldnames = names
        for row in reader:
            if None in row:
                errors.append(f"line {reader.line_num}: more cells than columns")
                continue
            values = {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
            if values:
                items.append((f"line {reader.line_num}", values))
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(f"line {exc.lineno}: not JSON: {exc.msg}")
            return []
        if not isinstance(data, list):
            errors.append("line 1: a JSON file holds a list of proxies")
            return []
        for number, entry in enumerate(data, 1):
            if isinstance(entry, str):
                items.append((f"item {number}", {"url": entry}))
            elif isinstance(entry, dict):
                items.append(
                    (f"item {number}", {ALIASES.get(str(k), str(k)): v for k, v in entry.items()})
                )
            else:
                errors.append(f"item {number}: a proxy is a string or an object")
    return items


def build(item: dict[str, Any], pool_id: UUID, defaults: Defaults) -> Proxy:
    """Return the proxy one entry describes.

    Raises
    ------
    ValueError
        With a one-line reason, for anything the storage would refuse too.

    """
    fields = dict(item)
    unknown = [k for k in fields if k not in COLUMNS and k != "url"]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    if "url" in fields:
        for name, value in split_url(str(fields.pop("url"))).items():
            fields.setdefault(name, value)
    if "host" not in fields or "port" not in fields:
        raise ValueError("a proxy needs a host and a port")
    for name in INTEGERS:
        if name in fields and not isinstance(fields[name], int):
            fields[name] = _number(fields[name], name, int)
    for name in FLOATS:
        if name in fields and not isinstance(fields[name], (int, float)):
            fields[name] = _number(fields[name], name, float)
    user, password = fields.pop("username", None), fields.pop("password", None)
    if (user is None) != (password is None):
        raise ValueError("a user needs a password (and a password a user)")
    protocol = str(fields.pop("protocol", "http")).lower()
    if protocol not in {p.value for p in ProxyProtocol}:
        raise ValueError(f"unknown scheme {protocol!r} (http, https, socks4 or socks5)")
    status = str(fields.pop("status", defaults.status.value)).lower()
    if status not in {s.value for s in ProxyStatus}:
        raise ValueError(f"unknown status {status!r} (active, inactive, slow or banned)")
    fields.setdefault("max_concurrency", defaults.max_concurrency)
    try:
        credentials = None if user is None else ProxyCredentials(user=user, password=password)
        proxy = Proxy(
            pool_id=pool_id,
            protocol=ProxyProtocol(protocol),
            status=ProxyStatus(status),
            credentials=credentials,
            **fields,
        )
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
    codec.encode_proxy(proxy)  # what the storage would refuse, refused here, before writing
    return proxy


def _number(value: Any, name: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a number") from None


def split_url(url: str) -> dict[str, Any]:
    """Split ``[scheme://][user:password@]host:port`` into the proxy's fields."""
    text = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    if not parts.hostname or port is None:
        raise ValueError(f"{url!r} is not [scheme://][user:password@]host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a proxy address has no path or query")
    fields: dict[str, Any] = {"protocol": parts.scheme, "host": parts.hostname, "port": port}
    if parts.username is not None or parts.password is not None:
        fields["username"] = unquote(parts.username or "")
        fields["password"] = unquote(parts.password or "")
    return fields


def identity(proxy: Proxy) -> tuple[str, str, int, str]:
    """Return what makes two proxies of a pool the same one: scheme, host, port and user."""
    user = proxy.credentials.user if proxy.credentials else ""
    protocol = ProxyProtocol(proxy.protocol).value
    return protocol, str(proxy.host).lower(), proxy.port, user


def to_url(proxy: Proxy) -> str:
    """Return a proxy in the lines form, with its scheme (credentials percent-encoded)."""
    host = str(proxy.host)
    if ":" in host:
        host = f"[{host}]"
    auth = ""
    if proxy.credentials is not None:
        user, password = proxy.credentials.user, proxy.credentials.password
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return f"{ProxyProtocol(proxy.protocol).value}://{auth}{host}:{proxy.port}"


def to_fields(proxy: Proxy) -> dict[str, Any]:
    """Return a proxy's columns (see :data:`COLUMNS`); absent values are None."""
    creds = proxy.credentials
    return {
        "protocol": ProxyProtocol(proxy.protocol).value,
        "host": str(proxy.host),
        "port": proxy.port,
        "username": creds.user if creds else None,
        "password": creds.password if creds else None,
        "status": ProxyStatus(proxy.status).value,
        "max_concurrency": proxy.max_concurrency,
        "country": proxy.country,
        "city": proxy.city,
        "latitude": proxy.latitude,
        "longitude": proxy.longitude,
        "isp": proxy.isp,
        "asn": proxy.asn,
        "source": proxy.source,
    }


def render(proxies: Sequence[Proxy], fmt: str) -> str:
    """Return proxies as a file in one of :data:`FORMATS`."""
    if fmt == "lines":
        return "".join(f"{to_url(p)}\n" for p in proxies)
    if fmt == "json":
        rows = [{k: v for k, v in to_fields(p).items() if v is not None} for p in proxies]
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for proxy in proxies:
        writer.writerow(["" if v is None else v for v in to_fields(proxy).values()])
    return buffer.getvalue()
