"""A fleet of ``spawn`` worker processes, started together and heard from through one queue.

The workers (``workers.py``) get two keyword arguments from the fleet: ``barrier``, where they
wait so that they all start at once, and ``results``, the queue they put their report on.
Leaving the ``with`` block kills whatever still runs and closes the queue.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import queue
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Optional

import pytest

START_TIMEOUT = 60.0


class Fleet:
    """Spawn ``size`` worker processes, start them at one barrier, collect their reports."""

    def __init__(self, size: int) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.barrier = self.ctx.Barrier(size + 1)  # the workers and this process
        self.results: multiprocessing.queues.Queue[dict[str, Any]] = self.ctx.Queue()
        self.procs: list[BaseProcess] = []

    def spawn(
        self, name: str, target: Callable[..., None], *args: Any, **kwargs: Any
    ) -> BaseProcess:
        """Add a worker ``target(*args, **kwargs, barrier=..., results=...)``; not started yet."""
        proc = self.ctx.Process(
            target=target,
            name=name,
            args=args,
            kwargs={**kwargs, "barrier": self.barrier, "results": self.results},
        )
        self.procs.append(proc)
        return proc

    def exit_codes(self, procs: Optional[Sequence[BaseProcess]] = None) -> dict[str, Any]:
        return {p.name: p.exitcode for p in (self.procs if procs is None else procs)}

    def start(self) -> None:
        """Start every worker and pass the barrier with them."""
        for proc in self.procs:
            proc.start()
        try:
            self.barrier.wait(timeout=START_TIMEOUT)
        except threading.BrokenBarrierError:
            pytest.fail(f"workers did not all start; exit codes {self.exit_codes()}")

    def collect(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Return ``count`` reports, failing the test when they do not come within ``timeout``."""
        deadline = time.monotonic() + timeout
        reports: list[dict[str, Any]] = []
        while len(reports) < count:
            try:
                reports.append(self.results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(
                    f"{len(reports)} of {count} workers reported; exit codes {self.exit_codes()}"
                )
        return reports

    def join(self, procs: Sequence[BaseProcess], timeout: float = 10.0) -> list[Optional[int]]:
        """Wait for ``procs`` to end; return their exit codes."""
        for proc in procs:
            proc.join(timeout=timeout)
        return [proc.exitcode for proc in procs]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self.results.close()
        self.results.join_thread()
