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

from sqlalchemy import Connection, Engine, Executable, Result, event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipam.db import wal_checkpoints
from pipam.db.engine import (
    BEGIN_NEXT,
    SqliteBegin,
    is_connection_lost,
    is_retryable,
    make_sessionmaker,
    one_writer,
    sqlite_begins,
)
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
        # Set when a write's work is done and its commit begins: a connection lost from then on may
        # have taken the commit with it, so the transaction is not run again.
        self.committing = False

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

    @contextlib.contextmanager
    def stream(self, stmt: Executable) -> Iterator[Result[Any]]:
        """``stmt``'s rows as they are read (a server-side cursor, 500 rows at a time), on this
        transaction's connection.

        PostgreSQL keeps such a cursor in a transaction block, and a read there runs in autocommit
        (``_read_options``): for the stream's time the connection opens a block, ended after it. At
        READ COMMITTED the statement reads what it would have read in the read's own transaction."""
        conn = self.connection
        driver = conn.connection.driver_connection
        block = conn.dialect.name == "postgresql" and driver.autocommit
        if block:
            driver.autocommit = False
        try:
            with conn.execute(stmt, execution_options={"yield_per": 500}) as result:
                yield result
        finally:
            if block and not driver.broken:  # a lost connection is discarded by SQLAlchemy anyway
                driver.rollback()
                driver.autocommit = True

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
        self._read_engine = engine.execution_options(**_read_options(engine))
        self._read = make_sessionmaker(self._read_engine)
        self.retries = 0  # transactions rerun after a deadlock or a lost race (benchmarks report it)
        # The database lives in this process (SQLite): no network between it and the caller.
        self.embedded = engine.url.get_backend_name() == "sqlite"
        # SQLite has one writer at a time: threads of one process queue here instead of poll-sleeping in
        # SQLite's busy handler (steps of up to 100 ms). Across processes SQLite's own lock decides.
        self._sqlite_writes = WriteLock() if one_writer(engine) else None
        self._checkpoints = wal_checkpoints.of_engine(engine)
        self._read_outside = make_sessionmaker(_begun_deferred(self._read_engine)) if self.embedded else self._read

    def session(self, write: bool = True) -> Session:
        """A session outside ``run`` (tests, tools)."""
        return (self._write if write else self._read_outside)()

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
        attempt = 0
        replaced = False  # a pooled connection found dead, and the transaction run again on a new one
        while attempt < attempts:
            attempt += 1
            tx = Transaction(self._write if write else self._read)
            try:
                with self._begin(tx, write, snapshot, now):
                    result = fn(tx)
                return result
            except (RetryTransaction, DBAPIError) as exc:
                tx.undo()
                if isinstance(exc, DBAPIError) and is_connection_lost(exc):
                    if retry and not replaced and _found_dead(exc, tx):
                        replaced = True
                        attempt -= 1  # not a lost race: the next run has the same chances as the first
                        log.info("a pooled database connection was dead; running the transaction again: %s", exc)
                        continue
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
            # The session begins at its first statement: inside the block, which says how.
            how = SqliteBegin.NOW if now else SqliteBegin.IMMEDIATE
            with self._write_queue(now), sqlite_begins(how), tx.session.begin():
                if isolation:
                    tx.session.connection(execution_options=isolation)
                yield
                tx.committing = True
            if self._checkpoints is not None:
                self._checkpoints.wake()
            return
        with self._read_engine.connect() as conn:
            if isolation:
                conn.execution_options(**isolation)
            with sqlite_begins(SqliteBegin.DEFERRED):
                began = conn.begin()
            with began:
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


def _begun_deferred(engine: Engine) -> Engine:
    """``engine``, its SQLite transactions begun deferred by a listener of its own: for the read sessions
    ``session`` hands out, which begin outside ``sqlite_begins``. The listener costs each of their
    statements SQLAlchemy's execution events (``pipam.db.engine``); ``run`` does not use this engine."""
    deferred = engine.execution_options()

    @event.listens_for(deferred, "begin")
    def begin(conn: Connection) -> None:
        conn.connection.info[BEGIN_NEXT] = SqliteBegin.DEFERRED  # read by the dialect's begin, next

    return deferred


def _read_options(engine: Engine) -> dict[str, Any]:
    """PostgreSQL reads in autocommit: psycopg sends BEGIN as a round trip of its own and then COMMIT,
    two of a show's three (the select is the third). At READ COMMITTED each statement reads its own
    snapshot inside a transaction too, so a read sees the same rows either way; a ``snapshot`` read
    sets REPEATABLE READ on its connection, which begins a real transaction. MariaDB is left as it is:
    PyMySQL begins without a round trip, and switching a connection to autocommit and back costs three."""
    return {"isolation_level": "AUTOCOMMIT"} if engine.dialect.name == "postgresql" else {}


def _found_dead(exc: DBAPIError, tx: Transaction) -> bool:
    """The connection died under the transaction before its commit began: nothing of it can have been
    committed, so running it again on a new connection is safe. SQLAlchemy has then marked every
    connection the pool opened before it as stale, and the next checkout opens a new one.

    This replaces a ping at every checkout (``pool_pre_ping``), which cost each transaction a round
    trip: after a database restart or failover, the first statement on each old connection fails
    instead, and the transaction runs once more. A database that is still down fails the second run
    too, at connect, and the client gets 503."""
    return exc.connection_invalidated and not tx.committing
