"""What a response or an error says about the proxy it went through, as an Outcome.

* a connection error, a timeout, a proxy error (the library's transport errors) or the
  proxy refusing the login (407): ``Outcome.failed()``;
* 403 or 429 from the target (or what the caller's rule calls blocked, e.g. a captcha
  page served with 200): ``Outcome.blocked(domain)`` for the request's target domain;
* anything else: ``Outcome.ok(latency_ms)``, the time from sending the request to the end
  of the response body. A 5xx is the target's answer and counts as ok for the proxy.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from ..outcome import BLOCKED, FAILED, Outcome

BLOCK_STATUSES = frozenset({403, 429})
PROXY_AUTH_REQUIRED = 407
_RANK = {FAILED: 2, BLOCKED: 1}


def target_of(url: str) -> str:
    """Return the host of ``url``, the domain a request is for (``target=`` of the acquire).

    Raises
    ------
    ValueError
        When the URL has no host (a relative URL, no scheme).

    """
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f"the URL has no host to send it to: {url!r}")
    return host


@dataclass(frozen=True)
class OutcomeRules:
    """How the leasing clients turn a response into an Outcome.

    Parameters
    ----------
    block_statuses:
        Statuses that mean the target refused the proxy (default 403 and 429).
    blocked:
        A rule of the caller's: called with the response (the library's response object,
        its body read), True when the target blocked the proxy whatever the status.

    """

    block_statuses: Collection[int] = BLOCK_STATUSES
    blocked: Optional[Callable[[Any], bool]] = None

    def judge(self, status: int, response: Any, domain: str, latency_ms: float) -> Outcome:
        """Return the outcome of a request answered with ``status`` in ``latency_ms``."""
        if status == PROXY_AUTH_REQUIRED:
            return Outcome.failed()
        if status in self.block_statuses or (self.blocked is not None and self.blocked(response)):
            return Outcome.blocked(domain)
        return Outcome.ok(max(0.0, latency_ms))


def worse(first: Optional[Outcome], then: Outcome) -> Outcome:
    """Return the outcome a unit of several requests reports: the worst one, else the last.

    A failure outranks a block, a block a success; among successes the last latency counts.
    """
    if first is None or _RANK.get(then.kind, 0) >= _RANK.get(first.kind, 0):
        return then
    return first


DEFAULT_RULES = OutcomeRules()
