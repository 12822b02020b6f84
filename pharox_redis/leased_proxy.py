"""``LeasedProxy``: a lease together with the proxy it holds, from one round trip."""

from __future__ import annotations

from typing import Optional

from pharox import Lease, Proxy

from .errors import LeaseLostError


class LeasedProxy:
    """A lease and its proxy, as one acquire returns them.

    Parameters
    ----------
    lease:
        The pharox lease (its ``expires_at`` moves forward when the lease is renewed).
    proxy:
        The leased proxy as it was when leased: host, port, protocol and credentials.

    """

    __slots__ = ("_lost", "lease", "proxy")

    def __init__(self, lease: Lease, proxy: Proxy) -> None:
        self.lease = lease
        self.proxy = proxy
        self._lost: Optional[LeaseLostError] = None

    @property
    def url(self) -> str:
        """Return the proxy URL with credentials, e.g. ``http://user:pw@10.0.0.1:8080``."""
        return self.proxy.url

    @property
    def lost(self) -> bool:
        """Return True once a keep-alive found that the lease is no longer held."""
        return self._lost is not None

    def check(self) -> None:
        """Raise the :class:`~pharox_redis.errors.LeaseLostError` if the lease was lost.

        Call it between units of work when the lease is kept alive in the background.
        """
        if self._lost is not None:
            raise self._lost

    def mark_lost(self, error: LeaseLostError) -> None:
        """Record that the lease is lost (used by the keep-alive)."""
        self._lost = error

    def __repr__(self) -> str:
        return f"LeasedProxy(lease={self.lease.id}, proxy={self.proxy.host}:{self.proxy.port})"
