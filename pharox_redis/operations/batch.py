"""What one round trip is made of: calls, batches, and the operations that yield them.

The records are named tuples: several are built for every acquire and release, and a tuple
is the cheapest immutable record to build.
"""

from __future__ import annotations

from typing import Any, Generator, NamedTuple, Optional, Sequence, TypeVar, Union

T = TypeVar("T")


class ScriptCall(NamedTuple):
    """Run one of the scripts in ``lua/`` with these KEYS and ARGV."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any]


class Command(NamedTuple):
    """Run one plain Redis command.

    Attributes
    ----------
    args:
        The command and its arguments.
    route:
        For a command without keys (``WAIT``, ``TIME``), a key whose node it must reach: on a
        single server it changes nothing; a cluster executor sends it to that key's node.

    """

    args: Sequence[Any]
    route: Optional[str] = None


class Scan(NamedTuple):
    """Every key matching ``pattern``, on every node: ``SCAN`` to its end (audit only).

    The one call that takes more than a round trip: on a cluster each master has a cursor
    of its own, so the executor walks them all. It is sent in a batch of its own.
    """

    pattern: str
    page: int = 1000


Call = Union[ScriptCall, Command, Scan]

KEYLESS = frozenset({"TIME", "WAIT", "SCAN", "MULTI", "EXEC", "SCRIPT", "PING"})


def slot_key(call: Call) -> Optional[str]:
    """Return a key whose slot a call must run in (None: any node will do).

    A script call's first key; a command's ``route``, else its first argument unless the
    command takes no key. Every call of this package names its keys this way, which is
    what lets a cluster executor route it.
    """
    if isinstance(call, ScriptCall):
        return call.keys[0]
    if isinstance(call, Command):
        if call.route is not None:
            return call.route
        if str(call.args[0]).upper() not in KEYLESS:
            return str(call.args[1])
    return None


class Batch(NamedTuple):
    """Calls sent in one round trip; ``atomic`` wraps them in MULTI/EXEC (one slot only)."""

    calls: Sequence[Call]
    atomic: bool = False


Op = Generator[Batch, list[Any], T]
"""A sans-I/O operation: yields batches, is sent their replies, returns its result."""


def one(call: Call) -> Batch:
    """Return a batch of a single call."""
    return Batch((call,))


class Stale:
    """Marker: the pool behind a cached name or id changed; resolve it again."""


STALE = Stale()
