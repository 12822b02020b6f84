"""What the sync and the async leasing client share: the lease they ask for, and the tries.

A request through a leasing client:

1. acquire a proxy of the pool for the request's target domain (``target=``, by default
   the URL's host: proxies blocked for it are skipped);
2. check the lease is still held (``leased.check()``: a lost lease raises
   :class:`~pharox_redis.LeaseLostError` and nothing is sent);
3. send the request through the proxy's client, taken from a bounded LRU so its
   keep-alive connections serve the next lease of the same proxy;
4. judge the result (:class:`~pharox_redis.http.rules.OutcomeRules`) and release the lease
   with that Outcome; on a failure or a block, while tries are left, ``rotate`` instead:
   the outcome is applied and the next proxy leased in the same round trip (a proxy just
   cooled down or blocked for this target is not picked again).

After the last try the last response is returned (a blocked one included), or the last
transport error raised. No proxy free raises pharox's ``ProxyUnavailableError``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Optional, TypeVar, Union

from pharox import ProxyFilters, ProxyUnavailableError, SelectorStrategy

from ..leased_proxy import LeasedProxy
from ..outcome import OK, Outcome
from .rules import DEFAULT_RULES, OutcomeRules

R = TypeVar("R")

DEFAULT_TIMEOUT = 30.0  # seconds for a request, unless the caller gives a timeout


@dataclass(frozen=True)
class LeaseSettings:
    """The leases a leasing client takes, and how many proxies a request may try.

    Parameters
    ----------
    pool_name, consumer_name, duration_seconds, filters, selector:
        As for ``manager.acquire``. ``duration_seconds`` should cover a request (or a
        session without keep-alive): a request on a lease whose local deadline passed is
        refused.
    wait:
        Passed to ``manager.acquire(..., wait=)`` when given (managers that can wait for
        a free proxy); by default a request fails at once when none is free.
    max_tries:
        Proxies a request tries at most (1: no rotation).
    rules:
        How a response becomes an Outcome.

    """

    pool_name: str
    consumer_name: Optional[str] = None
    duration_seconds: float = 60.0
    filters: Optional[ProxyFilters] = None
    selector: Optional[SelectorStrategy] = None
    wait: Optional[float] = None
    max_tries: int = 3
    rules: OutcomeRules = DEFAULT_RULES

    def __post_init__(self) -> None:
        tries = self.max_tries
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise ValueError(f"max_tries must be an int >= 1, got {tries!r}")

    def acquire_kwargs(self, target: Optional[str]) -> dict[str, Any]:
        """Return the keyword arguments of ``manager.acquire`` / ``with_proxy``."""
        kwargs: dict[str, Any] = {
            "consumer_name": self.consumer_name,
            "duration_seconds": self.duration_seconds,
            "filters": self.filters,
            "selector": self.selector,
            "target": target,
        }
        if self.wait is not None:
            kwargs["wait"] = self.wait
        return kwargs

    def rotate_kwargs(self, target: Optional[str], outcome: Outcome) -> dict[str, Any]:
        """Return the keyword arguments of ``manager.rotate`` after a failed try."""
        kwargs = self.acquire_kwargs(target)
        kwargs.pop("wait", None)
        kwargs["outcome"] = outcome
        return kwargs

    def again(self, tries: int, outcome: Outcome) -> bool:
        """Return True when a request that had ``outcome`` on try ``tries`` tries another."""
        return outcome.kind != OK and tries < self.max_tries

    def none_free(self, target: Optional[str]) -> ProxyUnavailableError:
        """Return the error a request raises when no proxy is free."""
        return ProxyUnavailableError(
            f"no proxy of pool {self.pool_name!r} is free" + (f" for {target!r}" if target else "")
        )


@dataclass(frozen=True)
class Sent(Generic[R]):
    """What one try gave: the response or the transport error, and its outcome."""

    response: Optional[R]
    error: Optional[Exception]
    outcome: Outcome


class Acquire(NamedTuple):
    """Step: ``manager.acquire(pool_name, **kwargs)``; the flow gets the LeasedProxy or None."""

    kwargs: dict[str, Any]


class Send(NamedTuple):
    """Step: send the request through ``leased``; the flow gets a :class:`Sent`."""

    leased: LeasedProxy


class Release(NamedTuple):
    """Step: ``manager.release_proxy(leased, outcome=outcome)``."""

    leased: LeasedProxy
    outcome: Optional[Outcome]


class Rotate(NamedTuple):
    """Step: ``manager.rotate(leased, **kwargs)``; the flow gets the next LeasedProxy or None."""

    leased: LeasedProxy
    kwargs: dict[str, Any]


Step = Union[Acquire, Send, Release, Rotate]
Tries = Generator[Step, Any, Any]


def tries(settings: LeaseSettings, domain: str) -> Tries:
    """Yield the steps of one request through the leasing clients; return its response.

    Written once for both clients (as ``flows.py`` is for both managers): the sync client
    performs each step with a sync manager, the async one awaits it. Raises what the request
    raises: the last transport error, ``ProxyUnavailableError``, or an error of a step (a
    try that raised anything but a transport error releases its lease first).
    """
    leased = yield Acquire(settings.acquire_kwargs(domain))
    count = 0
    last: Optional[Sent[Any]] = None
    while leased is not None:
        count += 1
        try:
            last = yield Send(leased)
        except BaseException:
            yield Release(leased, None)
            raise
        assert last is not None
        if not settings.again(count, last.outcome):
            yield Release(leased, last.outcome)
            break
        leased = yield Rotate(leased, settings.rotate_kwargs(domain, last.outcome))
    if last is None:
        raise settings.none_free(domain)
    if last.error is not None:  # the last try's, or rotated after it and no proxy was left
        raise last.error
    return last.response
