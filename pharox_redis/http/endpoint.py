"""``ProxyEndpoint``: where a proxy listens and how to log in, spelled for each HTTP client.

pharox's ``Proxy.url`` quotes credentials with ``quote_plus``: a space becomes ``+``, which
requests and httpx decode literally, so the login fails. Here credentials are
percent-encoded with ``quote(safe="")`` when they go in a URL (a space is ``%20``, ``@`` is
``%40``, ``:`` is ``%3A``), and kept raw where a client takes them apart from the URL
(``Proxy-Authorization`` headers, SOCKS user names and passwords). No client library is
imported here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import quote

from pharox import Proxy, ProxyProtocol

from ..leased_proxy import LeasedProxy

SOCKS = ("socks4", "socks5")


@dataclass(frozen=True)
class ProxyEndpoint:
    """A proxy's scheme, address and credentials: what a client needs to go through it.

    Attributes
    ----------
    scheme:
        ``"http"``, ``"https"`` (TLS to the proxy itself), ``"socks4"`` or ``"socks5"``.
    host:
        Host name or IP address (an IPv6 address without brackets).
    port:
        TCP port.
    username, password:
        The login, raw (not encoded); None for a proxy without one.

    """

    scheme: str
    host: str
    port: int
    username: Optional[str] = None
    password: Optional[str] = None

    @classmethod
    def of(cls, source: Union[LeasedProxy, Proxy, ProxyEndpoint]) -> ProxyEndpoint:
        """Return the endpoint of a LeasedProxy, a pharox Proxy (or an endpoint, as is)."""
        if isinstance(source, ProxyEndpoint):
            return source
        proxy = source.proxy if isinstance(source, LeasedProxy) else source
        if not isinstance(proxy, Proxy):
            raise ValueError(
                f"expected a LeasedProxy, a pharox Proxy or a ProxyEndpoint, got {type(source)}"
            )
        protocol = proxy.protocol
        scheme = protocol.value if isinstance(protocol, ProxyProtocol) else str(protocol)
        credentials = proxy.credentials
        return cls(
            scheme,
            str(proxy.host),
            proxy.port,
            credentials.user if credentials else None,
            credentials.password if credentials else None,
        )

    @property
    def is_socks(self) -> bool:
        """Return True for a SOCKS4 or SOCKS5 proxy."""
        return self.scheme in SOCKS

    @property
    def netloc(self) -> str:
        """Return ``host:port``, an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    def url(self, *, credentials: bool = True, remote_dns: bool = True) -> str:
        """Return the proxy URL, credentials percent-encoded with ``quote(safe="")``.

        Parameters
        ----------
        credentials:
            Put the login in the URL (``user:password@``); False leaves it out, for clients
            that take it apart (headers, ``auth=``).
        remote_dns:
            For SOCKS: ``socks5h`` / ``socks4a``, so the proxy resolves the target's host
            name (the default: the name never leaks to the local resolver, and names only
            the proxy can resolve work). False: ``socks5`` / ``socks4``, resolved locally.

        """
        scheme = self.scheme
        if remote_dns and scheme == "socks5":
            scheme = "socks5h"
        elif remote_dns and scheme == "socks4":
            scheme = "socks4a"
        userinfo = ""
        if credentials and self.username is not None:
            userinfo = quote(self.username, safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password, safe="")
            userinfo += "@"
        return f"{scheme}://{userinfo}{self.netloc}"

    def basic_auth(self) -> Optional[str]:
        """Return the ``Proxy-Authorization`` value (``Basic <base64>``), or None."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def proxy_headers(self) -> dict[str, str]:
        """Return the headers an HTTP(S) proxy needs: ``Proxy-Authorization`` when it has a login.

        The header name is sent in its canonical case: some proxies match it
        case-sensitively (pproxy 2.7 does), and urllib3's ``make_headers`` spells it in
        lower case.
        """
        value = self.basic_auth()
        return {} if value is None else {"Proxy-Authorization": value}

    def __repr__(self) -> str:
        login = f"{self.username}:***@" if self.username is not None else ""
        return f"ProxyEndpoint({self.scheme}://{login}{self.netloc})"


def endpoint(source: Union[LeasedProxy, Proxy, ProxyEndpoint]) -> ProxyEndpoint:
    """Return the :class:`ProxyEndpoint` of a LeasedProxy or a pharox Proxy."""
    return ProxyEndpoint.of(source)
