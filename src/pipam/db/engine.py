"""Engine set-up per database kind, and the classification of errors worth a retry."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextvars import ContextVar
from enum import Enum
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolResetState

from pipam.db import wal_checkpoints
from pipam.errors import NotNow

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Pick the drivers Pipam ships with when a URL names only the database kind."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername in ("mysql", "mariadb"):
        parsed = parsed.set(drivername="mysql+pymysql")
    return parsed.render_as_string(hide_password=False)


def json_loads(text: str | bytes) -> Any:
    """JSON columns as read. orjson decodes a port's tags in a fifth of json's time (a list page decodes
    one per row); json takes what orjson refuses and json itself wrote, such as a lone surrogate's escape."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, *, causal_reads: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``; on a Galera cluster with ``causal_reads`` (the default) every read waits
    for the write sets the cluster committed before it (``wsrep_sync_wait``)."""
    url = normalise_url(url)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs.setdefault("json_deserializer", json_loads)
    if backend == "sqlite":
        path = wal_checkpoints.file_of(parsed)
        if path is not None:
            kwargs.setdefault("poolclass", wal_checkpoints.CheckpointedPool)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _configure_sqlite(engine)
        if path is not None:
            wal_checkpoints.attach(engine, path)
        return engine
    options: dict[str, Any] = {
        # No pre-ping: it cost every transaction a round trip (60-130 us of wall clock on PostgreSQL).
        # A pooled connection found dead instead fails its first statement, and the Runner runs the
        # transaction again on a new one (``Runner.run``).
        # READ COMMITTED so that a retried lookup inside a transaction sees rows other servers
        # committed meanwhile (MariaDB's default REPEATABLE READ would keep showing the old snapshot).
        "isolation_level": "READ COMMITTED",
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": 10,
    }
    if backend == "mysql":
        options["connect_args"] = {"connect_timeout": 5, "read_timeout": 60, "write_timeout": 60}
        options["pool_recycle"] = 3600
        options["pool_reset_on_return"] = None  # _reset_open_transaction instead
    elif backend == "postgresql":
        options["connect_args"] = {"connect_timeout": 5}
    options.update(kwargs)
    engine = create_engine(url, **options)
    if backend == "mysql":
        _configure_galera(engine, causal_reads)
        event.listen(engine, "reset", _reset_open_transaction)
    elif backend == "postgresql":
        event.listen(engine, "do_execute", _execute_unprepared)
    return engine


# The execution option of a statement psycopg must not prepare: ``.execution_options(**UNPREPARED)``.
UNPREPARED = {"pipam_unprepared": True}


def _execute_unprepared(cursor: Any, statement: str, parameters: Any, context: Any) -> bool | None:
    """Run a statement marked ``UNPREPARED`` without a server-side prepared statement, so that PostgreSQL
    plans it for its values each time. psycopg prepares a statement on its fifth run; PostgreSQL may
    then keep one generic plan, costed when the table was small, until the table is next analyzed: a
    lookup of 1,000 values went from an index to comparing every row with each value (2.8 s a bulk
    create at 100,000 ports, bench/README.md)."""
    if not context.execution_options.get("pipam_unprepared"):
        return None
    cursor.execute(statement, parameters, prepare=False)
    return True


def _reset_open_transaction(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
    """A connection given back to the pool is rolled back only when the server says a transaction is
    still open on it. The pool's own reset rolls back every one, including those whose transaction
    was just committed: with PyMySQL a ROLLBACK round trip per transaction, a third of a read's."""
    # Imported here: PyMySQL costs every process that imports it (SQLite servers too) about 9 MB.
    from pymysql.constants.SERVER_STATUS import SERVER_STATUS_IN_TRANS

    if state.terminate_only:
        return
    status = getattr(dbapi_conn, "server_status", None)
    if status is None or status & SERVER_STATUS_IN_TRANS:
        dbapi_conn.rollback()


def _configure_galera(engine: Engine, causal_reads: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Asked of every new connection, not once per engine: the servers behind one URL (a load
        # balancer, a VIP) may change. Plain MariaDB says wsrep_on OFF, MySQL has no such variable.
        cur = dbapi_conn.cursor()
        try:
            cur.execute(_GALERA_VARIABLES)
            found = {str(name).lower(): str(value) for name, value in cur.fetchall()}
            galera = found.get("wsrep_on", "").upper() == "ON" and found.get("wsrep_provider", "none") != "none"
            if galera and found.get("innodb_flush_log_at_trx_commit") == "0":
                _warn_lossy_commits(dbapi_conn)
            if galera and causal_reads:
                # Galera applies other nodes' write sets asynchronously: without a causality wait a
                # read may miss a row another server committed through another node a moment ago
                # (measured: a port created right after its subnet got 404, or no address). Bit 1 makes
                # each read wait until this node has applied everything committed before it; an
                # operator's stronger setting (more bits) is kept.
                sync_wait = int(found.get("wsrep_sync_wait") or 0) | 1
                cur.execute(f"SET SESSION wsrep_sync_wait = {sync_wait}")
        finally:
            cur.close()


_GALERA_VARIABLES = (
    "SHOW VARIABLES WHERE Variable_name IN "
    "('wsrep_on', 'wsrep_provider', 'wsrep_sync_wait', 'innodb_flush_log_at_trx_commit')"
)
_warned_lossy: set[str] = set()


def _warn_lossy_commits(dbapi_conn: Any) -> None:
    """Once per node and process: a node that writes its commits out only once a second loses them when
    it crashes, and when a majority of nodes crash together the survivors may not hold them either."""
    node = f"{getattr(dbapi_conn, 'host', '?')}:{getattr(dbapi_conn, 'port', '?')}"
    if node in _warned_lossy:
        return
    _warned_lossy.add(node)
    log.warning(
        "Galera node %s has innodb_flush_log_at_trx_commit = 0: if most of the cluster's nodes crash within "
        "a second of each other, changes Pipam has already confirmed to clients can be lost. Set it to 1, "
        "or 2 to survive a crash of the database process but not of its machine (docs/deployment.md, "
        "'Durability').",
        node,
    )


# How long a SQLite statement waits for another connection's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 60_000


class SqliteBegin(Enum):
    """How a SQLite transaction begins; ``SQLITE_BEGIN`` says which for the next one."""

    # The write lock up front: a deferred transaction that later writes can fail with "database is
    # locked" instead of waiting, when another process wrote first.
    IMMEDIATE = "BEGIN IMMEDIATE"
    DEFERRED = "BEGIN"  # a read
    # A change tried on the event loop: the write lock now or not at all (NotNow), since waiting for
    # another process there would stall every request of the worker.
    NOW = "BEGIN IMMEDIATE, not waiting"


# Set by ``pipam.db.transactions`` around the transactions it runs; tools and tests that begin on an
# engine themselves get IMMEDIATE.
SQLITE_BEGIN: ContextVar[SqliteBegin] = ContextVar("pipam_sqlite_begin", default=SqliteBegin.IMMEDIATE)
# A pooled connection's ``info`` key: how its next BEGIN begins, over ``SQLITE_BEGIN``, when a listener
# of an engine of its own decides (``pipam.db.transactions._begun_deferred``).
BEGIN_NEXT = "pipam_sqlite_begin_next"


@contextlib.contextmanager
def sqlite_begins(how: SqliteBegin) -> Iterator[None]:
    """SQLite transactions begun in the block begin ``how``."""
    token = SQLITE_BEGIN.set(how)
    try:
        yield
    finally:
        SQLITE_BEGIN.reset(token)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _sqlite_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # The dialect's own step, not a "begin" listener (a pool event like "connect" above costs nothing
    # per statement): once an engine has any listener of its own, SQLAlchemy dispatches its execution
    # events around every statement, which cost a tenth of a port create's instructions.
    engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]


def _sqlite_begin(dbapi_conn: Any) -> None:
    """BEGIN as ``SQLITE_BEGIN`` says; the driver connection is in autocommit (``on_connect``), so
    nothing else begins. Straight to the driver: SQLAlchemy's statement machinery cost more than it."""
    driver = dbapi_conn.driver_connection
    how = dbapi_conn.info.pop(BEGIN_NEXT, None) or SQLITE_BEGIN.get()
    if how is not SqliteBegin.NOW:
        driver.execute(how.value)
        return
    driver.execute("PRAGMA busy_timeout=0")
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise NotNow() from exc
        raise
    finally:
        driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def one_writer(bind: Connection | Engine) -> bool:
    """Whether the database writes one transaction at a time (SQLite: a writer holds the whole file, and
    a transaction whose snapshot another write has overtaken cannot write). What a writing transaction
    reads then stays as read until it commits, so the row-level claims and row locks that keep
    concurrent writers apart elsewhere buy nothing there."""
    return bind.dialect.name == "sqlite"


def changes_in_with(bind: Connection | Engine) -> bool:
    """Whether a statement's ``WITH`` may change rows that the statement goes on to use (PostgreSQL;
    MariaDB and SQLite take only reads there): two dependent changes then cost one round trip."""
    return bind.dialect.name == "postgresql"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
# Deadlock; on Galera also a certification failure (another node committed a conflicting write set
# first) or a local transaction aborted by a replicated one.
_RETRY_MYSQL_CODES = {1213}
_LOST_MYSQL_CODES = {2003, 2006, 2013, 2014, 2055, 1927}
# The server answers but cannot take this transaction now; another server behind the load balancer
# (or this one, later) can. Retrying here would only fail again.
_NOT_READY_MYSQL_CODES = {
    # ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node for application use": the node is not in
    # the primary component (quorum lost), or is still joining. Every statement touching a table gets it.
    1047,
    # ER_ERROR_DURING_COMMIT: the commit could not be replicated, e.g. "Got error 6 'No such device or
    # address' during COMMIT" or "Error while appending streaming replication fragment (provider status:
    # Not connected to Primary Component)" when quorum is lost while the transaction commits. The
    # transaction is rolled back.
    1180,
    # ER_LOCK_WAIT_TIMEOUT: on Galera also what a causal read gets when the node cannot catch up within
    # repl.causal_read_timeout (30 s; seen on a node whose applier was blocked). Elsewhere the statement
    # already waited innodb_lock_wait_timeout (50 s). Either way, waiting as long again, up to db_retries
    # times, would hold the client for minutes: tell it to come back (or go to another server).
    1205,
}
# read_only_sql_transaction: a PostgreSQL hot standby (reached without target_session_attrs=read-write,
# or a primary demoted under us) refuses writes.
_NOT_READY_SQLSTATES = {"25006"}


def is_retryable(exc: BaseException) -> bool:
    """Deadlocks, serialization failures, lock time-outs and unique-key races: worth a new try."""
    if isinstance(exc, IntegrityError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _RETRY_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRY_MYSQL_CODES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(orig)


def is_connection_lost(exc: BaseException) -> bool:
    """The database went away, refused us, or cannot take writes now (a Galera node without quorum, a
    PostgreSQL standby): the client should come back later (503). An error raised while handling one of
    these counts as it: rolling back on a socket PostgreSQL closed mid-statement, psycopg answers
    "another command is already in progress", which replaced the loss and answered 500."""
    context = exc.__context__
    return _lost(exc) or (isinstance(context, DBAPIError) and is_connection_lost(context))


def _lost(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if is_not_ready(exc):
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _LOST_MYSQL_CODES:
        return True
    text = str(orig).lower()
    return any(
        s in text
        for s in (
            "connection refused",
            "server closed the connection",
            "terminating connection",
            "connection failed",
            "could not connect",
            "consuming input failed",
            "connection socket closed",
        )
    )


def is_not_ready(exc: BaseException) -> bool:
    """The server is up but not in a state to run this transaction (see the codes above)."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    # psycopg raises read_only_sql_transaction as an InternalError, PyMySQL these codes as
    # OperationalError: decide by code, whatever the class.
    if getattr(orig, "sqlstate", None) in _NOT_READY_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _NOT_READY_MYSQL_CODES
