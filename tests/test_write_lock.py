"""The process's SQLite write lock: threads take it as any lock, the event loop waits for it without blocking."""

from __future__ import annotations

import asyncio
import threading

from pipam.db.write_lock import WriteLock


def test_a_free_lock_is_released_at_once() -> None:
    lock = WriteLock()

    async def main() -> None:
        await asyncio.wait_for(lock.released(), 1)

    asyncio.run(main())
    assert lock.acquire(blocking=False)
    assert lock.locked() and not lock.acquire(blocking=False)
    lock.release()


def test_the_loop_waits_for_a_thread_to_release_it_and_keeps_running_meanwhile() -> None:
    lock = WriteLock()
    lock.acquire()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> None:
        running = asyncio.ensure_future(ticker())
        waiting = asyncio.ensure_future(lock.released())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert ticks >= 5, "the loop was blocked while waiting"
        threading.Thread(target=lock.release).start()
        await asyncio.wait_for(waiting, 5)
        running.cancel()

    asyncio.run(main())
    assert not lock.locked()


def test_a_release_between_the_waiters_look_and_its_sign_up_still_wakes_it() -> None:
    """The one interleaving that could lose a wake-up, forced: the waiter finds the lock held, and before
    it has signed up as a waiter, a thread releases the lock and does not take it again."""
    lock = WriteLock()
    lock.acquire()
    real = lock._lock
    releasing = threading.Thread(target=lock.release)

    class LooksThenLetsGo:
        def locked(self) -> bool:
            held = real.locked()
            releasing.start()  # released right after the look...
            releasing.join(0.2)  # ...and that release has ended, or it waits for the waiter to sign up
            return held

        def acquire(self, blocking: bool = True) -> bool:
            return real.acquire(blocking)

        def release(self) -> None:
            real.release()

    lock._lock = LooksThenLetsGo()  # type: ignore[assignment]

    async def main() -> None:
        await asyncio.wait_for(lock.released(), 2)  # a lost wake-up times out: nothing releases again

    asyncio.run(main())
    releasing.join()


def test_a_cancelled_waiter_does_not_keep_the_others_asleep() -> None:
    lock = WriteLock()
    lock.acquire()

    async def main() -> None:
        gone = asyncio.ensure_future(lock.released())
        staying = asyncio.ensure_future(lock.released())
        await asyncio.sleep(0.05)
        gone.cancel()
        threading.Thread(target=lock.release).start()
        await asyncio.wait_for(staying, 5)
        assert gone.cancelled()
        assert not lock._waiters  # the cancelled one left the list when it was cancelled

    asyncio.run(main())
