"""This process's SQLite writes, one at a time, for threads and for the event loop alike.

A thread waits for the lock as for any lock. The event loop must not block, so a change tried there takes
the lock only if it is free, and otherwise awaits :meth:`WriteLock.released` and tries again. Before,
such a change went to the thread pool. Under steady concurrent writes a change in the pool then made the
next ones meet the lock and follow it there, and the server could stay in that mode for the rest of a
run: with 8 clients creating ports on one worker, 1,500-2,500 of 9,000 creates ran in the pool and a
round of 3,000 dropped from about 600 to 420 ports/s (bench/README.md, ninth round)."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class WriteLock:
    """A lock that threads acquire as usual and that the event loop can wait for without blocking."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters_guard = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def acquire(self, blocking: bool = True) -> bool:
        return self._lock.acquire(blocking)

    def release(self) -> None:
        self._lock.release()
        # Under the guard even when no one waits: read without it, the list could miss a waiter that saw
        # the lock held a moment before it was released, and that waiter would sleep through this release.
        with self._waiters_guard:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if future.done():  # its request was cancelled
                continue
            with contextlib.suppress(RuntimeError):  # its loop has closed (a worker stopping): none to wake
                loop.call_soon_threadsafe(_wake, future)

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return self._lock.locked()

    async def released(self) -> None:
        """Return once the lock has been free since this call began; another may hold it again by then."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_guard:
            # Checked under the guard after release() freed the lock or before it looks for waiters:
            # either this sees it free, or release() finds this waiter.
            if not self._lock.locked():
                return
            self._waiters.append((loop, future))
        try:
            await future
        finally:
            if future.cancelled():  # its request was: no later release need look at it
                with self._waiters_guard, contextlib.suppress(ValueError):
                    self._waiters.remove((loop, future))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled after release() looked
        future.set_result(None)
