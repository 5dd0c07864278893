"""Which database errors are worth a retry and which mean "unavailable, come back later" (503).

The errors are built as the drivers raise them (code, message and SQLSTATE as observed from MariaDB
10.11 with Galera 4 and from PostgreSQL 15), wrapped as SQLAlchemy wraps them.
"""

from __future__ import annotations

import psycopg
import pymysql
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from pipam.config import load_settings
from pipam.db.engine import is_connection_lost, is_retryable, make_engine
from pipam.errors import DatabaseUnavailable, TooMuchContention
from pipam.service.database import Database
from tests.databases import server_url


def mysql_error(code: int, message: str, sqlstate: str | None = "HY000") -> sa_exc.DBAPIError:
    orig = pymysql.err.OperationalError(code, message, sqlstate=sqlstate)
    return sa_exc.DBAPIError.instance("COMMIT", {}, orig, pymysql.err.Error)


def pg_error(cls: type[psycopg.Error], message: str) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError.instance("INSERT INTO ports ...", {}, cls(message), psycopg.Error)


def raised_while_handling(first: sa_exc.DBAPIError, then: sa_exc.DBAPIError) -> sa_exc.DBAPIError:
    then.__context__ = first
    return then


UNAVAILABLE = {
    "galera quorum lost during commit": mysql_error(1180, "Got error 6 'No such device or address' during COMMIT"),
    "galera quorum lost while replicating": mysql_error(
        1180,
        "Error while appending streaming replication fragment(provider status: Not connected to Primary Component)",
    ),
    "galera node not primary": mysql_error(1047, "WSREP has not yet prepared node for application use", "08S01"),
    # Older PyMySQL releases do not report the SQLSTATE: the code alone must do.
    "galera node not primary, no sqlstate": mysql_error(
        1047, "WSREP has not yet prepared node for application use", None
    ),
    "postgres standby": pg_error(
        psycopg.errors.ReadOnlySqlTransaction, "cannot execute INSERT in a read-only transaction"
    ),
    "postgres standby refused by target_session_attrs": pg_error(
        psycopg.OperationalError,
        'connection failed: connection to server at "127.0.0.1", port 5433 failed: session is read-only',
    ),
    # Galera's causal read timing out on a node that is behind; InnoDB's lock wait timeout: the same code.
    "lock wait timeout": mysql_error(1205, "Lock wait timeout exceeded; try restarting transaction"),
    "mariadb gone": mysql_error(2013, "Lost connection to server during query", None),
    "postgres shut down": pg_error(psycopg.errors.AdminShutdown, "terminating connection due to administrator command"),
    "postgres socket closed": pg_error(psycopg.OperationalError, "connection socket closed"),
    # tests/test_db_faults.py, once in CI: the rollback after a killed backend fails in turn, and its error
    # is the one raised.
    "rollback after the socket closed": raised_while_handling(
        pg_error(psycopg.OperationalError, "connection socket closed"),
        pg_error(psycopg.OperationalError, "sending query failed: another command is already in progress"),
    ),
}

RETRYABLE = {
    "galera certification failure": mysql_error(
        1213, "WSREP detected deadlock/conflict and aborted the transaction. Try restarting the transaction", "40001"
    ),
    "innodb deadlock": mysql_error(1213, "Deadlock found when trying to get lock; try restarting transaction", "40001"),
    "postgres serialization failure": pg_error(psycopg.errors.SerializationFailure, "could not serialize access"),
}

NEITHER = {
    "postgres busy connection, nothing lost": pg_error(
        psycopg.OperationalError, "sending query failed: another command is already in progress"
    ),
    "syntax error": mysql_error(1064, "You have an error in your SQL syntax", "42000"),
    "postgres undefined table": pg_error(psycopg.errors.UndefinedTable, 'relation "ports" does not exist'),
}


@pytest.mark.parametrize("name", UNAVAILABLE)
def test_unavailable(name: str) -> None:
    assert is_connection_lost(UNAVAILABLE[name])
    assert not is_retryable(UNAVAILABLE[name])


@pytest.mark.parametrize("name", RETRYABLE)
def test_retryable(name: str) -> None:
    assert is_retryable(RETRYABLE[name])
    assert not is_connection_lost(RETRYABLE[name])


@pytest.mark.parametrize("name", NEITHER)
def test_neither(name: str) -> None:
    assert not is_retryable(NEITHER[name])
    assert not is_connection_lost(NEITHER[name])


def test_wrapped_classes() -> None:
    # PyMySQL raises these codes as OperationalError, psycopg a read-only transaction as InternalError;
    # the classification must not depend on the class.
    assert isinstance(UNAVAILABLE["galera quorum lost during commit"], sa_exc.OperationalError)
    assert isinstance(UNAVAILABLE["postgres standby"], sa_exc.InternalError)


def failing_database(error: sa_exc.DBAPIError) -> tuple[Database, list[int]]:
    db = Database(load_settings(database_url="sqlite://", retry_after=7, db_retries=3))
    calls: list[int] = []

    def fail(_: object) -> None:
        calls.append(1)
        raise error

    db.fail = fail  # type: ignore[attr-defined]
    return db, calls


@pytest.mark.parametrize("name", ["galera quorum lost during commit", "galera node not primary", "postgres standby"])
def test_unit_of_work_answers_unavailable_at_once(name: str) -> None:
    db, calls = failing_database(UNAVAILABLE[name])
    with pytest.raises(DatabaseUnavailable):
        db.run(db.fail)  # type: ignore[attr-defined]
    assert len(calls) == 1  # another try on the same node would fail the same way
    db.dispose()


def test_unit_of_work_retries_certification_failures() -> None:
    db, calls = failing_database(RETRYABLE["galera certification failure"])
    with pytest.raises(TooMuchContention, match="retried 3 times"):  # contention, not an outage
        db.run(db.fail)  # type: ignore[attr-defined]
    assert len(calls) == 3 and db.retries == 2
    db.dispose()


def test_plain_mariadb_sessions_keep_their_sync_wait() -> None:
    """Galera detection on connect must leave a MariaDB without Galera as it is."""
    engine = make_engine(server_url("mariadb", "galera_detect"))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT @@wsrep_on")).scalar_one() == 0
            assert conn.execute(text("SELECT @@session.wsrep_sync_wait")).scalar_one() == 0
    finally:
        engine.dispose()
