"""An address change held open after it entered the IPAM gate, for tests of the fence against it."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Connection, text

from pipam.db.engine import make_engine
from pipam.db.transactions import Transaction
from pipam.service.database import Database, UnitOfWork
from pipam.testing import local


class HeldChange:
    """A port create through Pipam's own transaction runner, held open (in a thread) after it entered the
    gate and allocated, until ``commit()``; not retried, so that its first outcome is seen."""

    def __init__(self, db: Database, network_id: str) -> None:
        self.db = db
        self.network_id = network_id
        self.entered = threading.Event()
        self.go = threading.Event()
        self.port: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.committed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.entered.wait(60), "the port create did not get through the gate"
        assert self.error is None, self.error

    def _run(self) -> None:
        def create(tx: Transaction) -> None:
            self.port = local.create(UnitOfWork(self.db, tx), "port", {"network_id": self.network_id})
            self.entered.set()
            self.go.wait(120)

        try:
            self.db.runner.run(create, retry=False)
            self.committed = True
        except BaseException as exc:
            self.error = exc
            self.entered.set()

    def commit(self, timeout: float) -> bool:
        """Let the transaction commit; False if it has not ended within ``timeout`` seconds."""
        self.go.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self) -> None:
        self.go.set()
        self.thread.join(60)


# A transaction of this database's sessions waiting for a row lock. innodb_trx is not read live: InnoDB
# copies the transactions into a cache, and refreshes it only on a read that comes more than 0.1 s after
# the last one (CACHE_MIN_IDLE_TIME_NS in MariaDB's trx0i_s.cc). Polled every 50 ms, it showed the
# transactions of its first read for as long as the polling went on: a wait that began after that read
# was never seen, and the fence gave up at innodb_lock_wait_timeout (50 s). (Rows pinned that way are the
# likely reason a wait was once seen under a session id that no session of the test had.)
MARIADB_LOCK_WAITS = (
    "SELECT count(*) FROM information_schema.innodb_trx t WHERE t.trx_state = 'LOCK WAIT' AND EXISTS ("
    "SELECT 1 FROM information_schema.processlist p WHERE p.db = DATABASE() AND p.id = t.trx_mysql_thread_id)"
)


# The same for PostgreSQL, whose pg_locks and pg_stat_activity are read fresh in each transaction.
POSTGRESQL_LOCK_WAITS = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted AND a.datname = current_database()"
)
LOCK_WAITS = {"postgresql": POSTGRESQL_LOCK_WAITS, "mysql": MARIADB_LOCK_WAITS}


def lock_waiters(conn: Connection) -> int:
    """Sessions of this database (the server may be shared with other test runs) waiting for a lock; 0
    where the server cannot say (SQLite). The transaction it reads in is ended, so that the next call
    reads afresh."""
    query = LOCK_WAITS.get(conn.dialect.name)
    if query is None:
        return 0
    try:
        return int(conn.execute(text(query)).scalar() or 0)
    finally:
        conn.rollback()


def lock_poll_interval(dialect: str) -> float:
    """Seconds between two reads of the database's lock waits. MariaDB's rows are refreshed only after
    0.1 s unread, across every session of the server: 0.3 s leaves a gap of more than 0.1 s in every
    interval even when both pytest workers poll at once. PostgreSQL's views are read live."""
    return 0.3 if dialect == "mysql" else 0.05


def wait_until_blocked(url: str, thread: threading.Thread, timeout: float = 60) -> None:
    """Wait until some transaction in the database of ``url`` waits for a lock (PostgreSQL, MariaDB),
    and assert that ``thread`` is still running then: it is the one waiting; fail when no wait shows
    within ``timeout`` seconds. On SQLite, which has no such view, give it a second."""
    engine = make_engine(url)
    try:
        if engine.dialect.name not in LOCK_WAITS:
            thread.join(1.0)
        else:
            deadline = time.monotonic() + timeout
            with engine.connect() as conn:
                while thread.is_alive() and not lock_waiters(conn):
                    assert time.monotonic() < deadline, f"no lock wait showed in {timeout} s"
                    time.sleep(lock_poll_interval(engine.dialect.name))
    finally:
        engine.dispose()
    assert thread.is_alive(), "it went through instead of waiting"
