"""The one way Pipam runs a transaction: retried on deadlocks and lost races, a lost database reported
as such, and the undo hooks of effects outside the database run whenever a transaction fails.

Requests, the migration, the CLI and schema set-up all go through :class:`Runner`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipam.db import wal_checkpoints
from pipam.db.engine import is_connection_lost, is_retryable, make_sessionmaker
from pipam.db.write_lock import WriteLock
from pipam.errors import Conflict, DatabaseUnavailable, HeldInProcess, NotNow, RetryTransaction, TooMuchContention

log = logging.getLogger("pipam.db")
T = TypeVar("T")


class Transaction:
    """One transaction: its connection, its ORM session, and the undos of what it did outside the database.

    A write begins on its session (which flushes at commit). A read begins on a connection and opens a
    session on it only when something asks for one: a show or a list page selects rows as views
    (``pipam.service.views``) and never needs one, and the session's own transaction handling cost
    about a third of such a read."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._session: Session | None = None
        self._connection: Connection | None = None
        self._undos: list[Callable[[], None]] = []

    def read_on(self, connection: Connection) -> None:
        """A read: the transaction is ``connection``'s, and a session, if one is asked for, joins it."""
        self._connection = connection

    @property
    def session(self) -> Session:
        if self._session is None:
            bind = {} if self._connection is None else {"bind": self._connection}
            self._session = self._sessions(**bind)
        return self._session

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.session.connection()
        return self._connection

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def on_rollback(self, undo: Callable[[], None]) -> None:
        self._undos.append(undo)

    def undo(self) -> None:
        """Run the undos newest first; one failing must not hide the error that caused the rollback."""
        undos, self._undos = self._undos, []
        for undo in reversed(undos):
            try:
                undo()
            except Exception:
                log.exception("undo of an outside effect failed; 'pipam ipam verify' will list what it left")


class Runner:
    """Runs functions in transactions on one engine."""

    def __init__(self, engine: Engine, retries: int = 10) -> None:
        self.engine = engine
        self.attempts = max(1, retries)
        self._write = make_sessionmaker(engine)
        self._write_now = make_sessionmaker(engine.execution_options(sqlite_nowait=True))
        self._read_engine = engine.execution_options(sqlite_immediate=False)
        self._read = make_sessionmaker(self._read_engine)
        self.retries = 0  # transactions rerun after a deadlock or a lost race (benchmarks report it)
        # The database lives in this process (SQLite): no network between it and the caller.
        self.embedded = engine.url.get_backend_name() == "sqlite"
        # SQLite has one writer at a time: threads of one process queue here instead of poll-sleeping in
        # SQLite's busy handler (steps of up to 100 ms). Across processes SQLite's own lock decides.
        self._sqlite_writes = WriteLock() if self.embedded else None
        self._checkpoints = wal_checkpoints.of_engine(engine)

    def session(self, write: bool = True) -> Session:
        return (self._write if write else self._read)()

    def run(
        self,
        fn: Callable[[Transaction], T],
        *,
        write: bool = True,
        snapshot: bool = False,
        retry: bool = True,
        now: bool = False,
    ) -> T:
        """Run ``fn`` in one transaction; rerun it from scratch after a deadlock or a lost race.

        ``snapshot``: one consistent view for the whole transaction (REPEATABLE READ), for readers
        that compare many tables while servers keep writing.

        ``now`` (a SQLite write, from the event loop): never wait. When the write lock is taken, by a
        thread of this process or by another process, or when the transaction would have to be rerun,
        it is rolled back and :class:`NotNow` raised, for the caller to run it in a thread instead.
        """
        if now and (not write or self._sqlite_writes is None):
            raise ValueError("now=True is for SQLite writes")
        attempts = 1 if now or not retry else self.attempts
        for attempt in range(1, attempts + 1):
            tx = Transaction(self._write_now if now else self._write if write else self._read)
            try:
                with self._begin(tx, write, snapshot, now):
                    result = fn(tx)
                return result
            except (RetryTransaction, DBAPIError) as exc:
                tx.undo()
                if isinstance(exc, DBAPIError) and is_connection_lost(exc):
                    raise DatabaseUnavailable() from exc
                if isinstance(exc, DBAPIError) and not is_retryable(exc):
                    raise
                if now:  # a rerun waits between attempts: not on the event loop
                    raise NotNow() from exc
                if attempt == attempts:
                    if isinstance(exc, IntegrityError):
                        raise Conflict(f"Conflicting concurrent change; retried {attempts} times") from exc
                    raise TooMuchContention(f"Too much contention; retried {attempts} times") from exc
                self.retries += 1
                log.debug("retrying transaction (attempt %d): %s", attempt, exc)
                time.sleep(random.uniform(0, 0.005 * 2 ** min(attempt, 7)))
            except BaseException:
                tx.undo()
                raise
            finally:
                tx.close()
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _begin(self, tx: Transaction, write: bool, snapshot: bool, now: bool = False) -> Iterator[None]:
        """Begin ``tx``; commit it when the block ends, roll it back when the block raises."""
        isolation = {"isolation_level": "REPEATABLE READ"} if snapshot and not self.embedded else {}
        if write:
            with self._write_queue(now), tx.session.begin():
                if isolation:
                    tx.session.connection(execution_options=isolation)
                yield
            if self._checkpoints is not None:
                self._checkpoints.wake()
            return
        with self._read_engine.connect() as conn:
            if isolation:
                conn.execution_options(**isolation)
            with conn.begin():
                tx.read_on(conn)
                try:
                    yield
                finally:
                    tx.close()  # before the connection's transaction ends, which the session only joined

    def _write_queue(self, now: bool) -> contextlib.AbstractContextManager[Any]:
        """What a write holds while it runs: this process's SQLite write lock (``now``: taken without
        waiting, or :class:`HeldInProcess`)."""
        lock = self._sqlite_writes
        if lock is None:
            return contextlib.nullcontext()
        if not now:
            return lock
        if not lock.acquire(blocking=False):
            raise HeldInProcess()
        return _releasing(lock)

    async def writes_released(self) -> None:
        """Once this process's write lock has been free since the call (SQLite; at once on other databases)."""
        if self._sqlite_writes is not None:
            await self._sqlite_writes.released()


@contextlib.contextmanager
def _releasing(lock: WriteLock) -> Iterator[None]:
    """Release ``lock``, already acquired, when the block ends."""
    try:
        yield
    finally:
        lock.release()
