"""Exceptions raised by pharox-redis, all within pharox's hierarchy."""

from __future__ import annotations

from typing import Optional
from uuid import UUID

from pharox import InvalidLeaseError, Lease, PharoxError


class RedisStorageError(PharoxError):
    """Redis could not be reached, timed out, or refused a command.

    Raised ``from`` the underlying redis-py exception, which stays available as
    ``__cause__``.

    Attributes
    ----------
    lease_id:
        Set when an acquire failed this way: the id of the lease the server may have made
        before the reply was lost. ``storage.get_lease(str(lease_id))`` finds it if it
        exists, so it can be released instead of waiting for it to expire.

    """

    lease_id: Optional[UUID] = None


class NotReplicatedError(RedisStorageError):
    """Fewer replicas than ``wait_replicas`` acknowledged a new lease within ``wait_timeout``.

    The lease has been released again (best effort), so nothing is held; a failover now
    could have lost it and handed the proxy to someone else.

    Parameters
    ----------
    lease_id:
        The lease that was made and released.
    acked:
        Replicas that acknowledged it.
    wanted:
        Replicas the storage waits for.

    """

    def __init__(self, lease_id: UUID, acked: int, wanted: int) -> None:
        super().__init__(
            f"Lease {lease_id} reached {acked} of the {wanted} replica(s) required in time; "
            "it was released."
        )
        self.lease_id = lease_id
        self.acked = acked
        self.wanted = wanted


class LeaseLostError(InvalidLeaseError):
    """A lease is no longer held: it expired, was released, or its pool was deleted.

    Whatever the holder did with the proxy since may have overlapped another holder.

    Parameters
    ----------
    lease:
        The lease that was lost, as the holder knew it.
    reason:
        What happened to it.

    """

    def __init__(self, lease: Lease, reason: str) -> None:
        super().__init__(f"Lease {lease.id} on proxy {lease.proxy_id} is lost: {reason}.")
        self.lease = lease
        self.reason = reason
