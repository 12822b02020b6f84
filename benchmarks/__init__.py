"""The pharox-redis benchmark harness: ``python -m benchmarks --help``.

It compares backends on pharox's own leasing benchmark, runs worker processes against one
shared pool next to the round-trip floor of the same Redis, measures pool scale, memory and
filtered acquires, checks the project's targets and writes ``BENCHMARKS.md`` with a plot.
Nothing here ever flushes a Redis: by default it starts a private ``redis-server``, and with
``--redis-url`` it writes under fresh key prefixes that it deletes afterwards.
"""
