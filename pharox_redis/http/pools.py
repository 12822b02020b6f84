"""``ClientCache``: one client (a connection pool) per proxy, the least recently used evicted.

A client built for a proxy keeps its keep-alive connections: the next lease of the same
proxy reuses them instead of connecting (and logging in) again. At most ``size`` idle
clients are kept; the least recently used one is closed when another is needed. A client
in use is never closed under its user: one evicted while borrowed is closed when the last
borrower gives it back. Thread-safe; the closing itself is the caller's (sync or async).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

C = TypeVar("C")


class _Entry(Generic[C]):
    __slots__ = ("borrowers", "client", "evicted")

    def __init__(self, client: C) -> None:
        self.client = client
        self.borrowers = 0
        self.evicted = False


class ClientCache(Generic[C]):
    """A bounded LRU of clients by proxy, as urllib3's ``PoolManager`` keeps pools by host.

    Parameters
    ----------
    size:
        How many clients to keep (at least 1).

    """

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"the number of clients kept must be an int >= 1, got {size!r}")
        self.size = size
        self._entries: OrderedDict[Hashable, _Entry[C]] = OrderedDict()
        self._lock = threading.Lock()
        self.made = 0  # clients built, for tests and stats

    def __len__(self) -> int:
        return len(self._entries)

    def borrow(self, key: Hashable, make: Callable[[], C]) -> tuple[C, list[C]]:
        """Return the client for ``key`` (built by ``make`` if needed) and clients to close.

        The caller gives it back with :meth:`give_back` and closes what both return.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(make())
                self.made += 1
                self._entries[key] = entry
            else:
                entry.evicted = False  # evicted while borrowed, not closed yet: kept again
                self._entries.move_to_end(key)
            entry.borrowers += 1
            return entry.client, self._evict()

    def give_back(self, key: Hashable, client: C) -> list[C]:
        """Return a borrowed client; return the clients to close now (it, if it was evicted)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.client is not client:
                return []  # evicted while borrowed and closed by its last borrower
            entry.borrowers -= 1
            if entry.evicted and entry.borrowers == 0:
                del self._entries[key]
                return [client]
            return []

    def clear(self) -> list[C]:
        """Forget every client; return those to close now (borrowed ones close when returned)."""
        with self._lock:
            closing = []
            for key, entry in list(self._entries.items()):
                if entry.borrowers == 0:
                    closing.append(entry.client)
                    del self._entries[key]
                else:
                    entry.evicted = True
            return closing

    def _evict(self) -> list[C]:
        closing: list[C] = []
        kept = [key for key, entry in self._entries.items() if not entry.evicted]
        for key in kept[: max(0, len(kept) - self.size)]:
            entry = self._entries[key]
            entry.evicted = True
            if entry.borrowers == 0:
                closing.append(entry.client)
                del self._entries[key]
        return closing
