"""The sans-I/O operations: everything the storages and managers do, free of I/O.

Each operation is a generator: it yields a :class:`~pharox_redis.operations.batch.Batch` of
Redis calls, receives their replies as a list, and finally returns its result. An executor
(``executor.py``) runs the batches, one round trip each, with a sync or an asyncio client, so
all logic (keys, argument encoding, reply decoding, retries on stale caches) is written once.

Every batch must be safe to send twice: the executors re-send a batch when Redis answers
NOSCRIPT, and redis-py's ``Retry`` may re-send a command whose reply was lost. All scripts are
idempotent for that reason (a lease retried with the same id returns the lease).

Modules by subject: ``batch`` (what a round trip is made of), ``context`` (settings and
caches), ``validation``, ``resolve`` (names and ids to pools), ``pools``, ``proxies``,
``selection`` (finding a proxy), ``leases``, ``acquire`` (the one-round-trip acquire),
``cleanup``, ``health`` and ``audit``.
"""
