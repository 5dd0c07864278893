"""Pooled connections on PostgreSQL and MariaDB: one found dead costs no request, and a transaction sends
no round trip it does not need (no ping at checkout, no BEGIN and COMMIT around a PostgreSQL read, no
ROLLBACK when a committed MariaDB connection goes back to the pool)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from pipam.config import load_settings
from pipam.db.engine import normalise_url
from pipam.db.models import Network
from pipam.db.transactions import Transaction
from pipam.errors import DatabaseUnavailable
from pipam.service.database import Database
from pipam.testing import local
from pipam.testing.server import Server
from tests.conftest import new_schema, reset

SERVERS = ["postgresql", "mariadb"]


def empty_database(kind: str, tmp_path: Any) -> Iterator[Database]:
    database = Database(load_settings(database_url=new_schema(kind, str(tmp_path), "pooled")))
    reset(database, "internal")
    yield database
    database.dispose()


@pytest.fixture(params=SERVERS)
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from empty_database(request.param, tmp_path)


@pytest.fixture
def postgres(tmp_path: Any) -> Iterator[Database]:
    yield from empty_database("postgresql", tmp_path)


@pytest.fixture
def mariadb(tmp_path: Any) -> Iterator[Database]:
    yield from empty_database("mariadb", tmp_path)


@pytest.fixture
def killer(db: Database) -> Iterator[Engine]:
    """Another connection to the same server, to end the pool's connections as a restart would."""
    engine = create_engine(normalise_url(db.settings.database_url), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def own_id(tx: Transaction) -> int:
    """The server's id of the transaction's connection."""
    if tx.connection.dialect.name == "postgresql":
        return int(tx.connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
    return int(tx.connection.execute(text("SELECT CONNECTION_ID()")).scalar_one())


def kill(killer: Engine, connection_id: int) -> None:
    with killer.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": connection_id})
        else:
            conn.execute(text(f"KILL CONNECTION {connection_id}"))


def networks(db: Database) -> int:
    return int(db.run(lambda u: u.session.scalar(select(func.count()).select_from(Network)), write=False))


def test_a_pooled_connection_found_dead_costs_no_request(db: Database, killer: Engine) -> None:
    pooled = db.run(lambda u: (local.create(u, "network", {"name": "before"}), own_id(u.tx))[1])
    kill(killer, pooled)  # the pool still holds it, as after a database restart
    made = db.run(lambda u: local.create(u, "network", {"name": "after"}))
    assert made["name"] == "after"
    assert networks(db) == 2


def test_a_transaction_whose_connection_dies_twice_answers_unavailable(db: Database, killer: Engine) -> None:
    runs = []

    def doomed(tx: Transaction) -> None:
        runs.append(own_id(tx))
        kill(killer, runs[-1])
        tx.connection.execute(text("SELECT 1"))

    with pytest.raises(DatabaseUnavailable):
        db.runner.run(doomed)
    assert len(runs) == 2  # run again once, on a new connection, then the client is told
    assert runs[0] != runs[1]


def test_a_connection_lost_at_commit_is_not_run_again(db: Database, killer: Engine) -> None:
    """The commit may or may not have reached the server: running the change again could make it twice."""
    runs = []

    def create(tx: Transaction) -> None:
        runs.append(own_id(tx))
        tx.session.add(Network(name="once", project_id="p"))

    def lost_on_commit(_conn: Any) -> None:
        kill(killer, runs[-1])

    event.listen(db.engine, "commit", lost_on_commit)
    try:
        with pytest.raises(DatabaseUnavailable):
            db.runner.run(create)
    finally:
        event.remove(db.engine, "commit", lost_on_commit)
    assert len(runs) == 1
    assert networks(db) == 0  # the COMMIT never reached the server


def test_postgres_reads_open_no_transaction(postgres: Database) -> None:
    """psycopg sends BEGIN as a round trip of its own; at READ COMMITTED a read sees the same without."""
    db = postgres

    def status(tx: Transaction) -> tuple[Any, str]:
        isolation = tx.connection.execute(text("SHOW transaction_isolation")).scalar_one()
        return tx.connection.connection.driver_connection.info.transaction_status, isolation

    assert db.runner.run(status, write=False) == (TransactionStatus.IDLE, "read committed")
    # A snapshot read is one transaction, and the write after it on the same pooled connection is too.
    assert db.runner.run(status, write=False, snapshot=True) == (TransactionStatus.INTRANS, "repeatable read")
    assert db.runner.run(status) == (TransactionStatus.INTRANS, "read committed")
    assert db.runner.run(status, write=False) == (TransactionStatus.IDLE, "read committed")


def test_mariadb_rolls_back_only_what_is_still_open(mariadb: Database) -> None:
    db = mariadb
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE reset_probe (v INT)"))

    def rollbacks(tx: Transaction) -> tuple[int, int]:
        """This connection's id, and the ROLLBACKs its session has run."""
        row = tx.connection.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()
        return own_id(tx), int(row[1])

    connection, before = db.run(lambda u: rollbacks(u.tx), write=False)
    for i in range(5):
        db.run(lambda u, i=i: local.create(u, "network", {"name": f"n{i}"}))
        networks(db)
    # The same connection served them all, one at a time, and none was rolled back after its commit.
    assert db.run(lambda u: rollbacks(u.tx), write=False) == (connection, before)
    # A connection given back with its transaction still open is rolled back all the same.
    raw = db.engine.raw_connection()
    raw.cursor().execute("INSERT INTO reset_probe VALUES (1)")
    raw.close()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reset_probe")).scalar_one() == 0


def test_a_postgres_read_streams_in_a_block_that_ends_with_the_stream(postgres: Database) -> None:
    """A server-side cursor needs a transaction block, which the read opens for the stream alone."""
    db = postgres
    db.run(lambda u: [local.create(u, "network", {"name": f"n{i}"}) for i in range(3)])

    def streamed(tx: Transaction) -> tuple[int, int, Any]:
        with tx.stream(select(Network.id)) as rows:
            cursors = tx.connection.execute(text("SELECT count(*) FROM pg_cursors")).scalar_one()
            seen = len(list(rows))
        return cursors, seen, tx.connection.connection.driver_connection.info.transaction_status

    assert db.runner.run(streamed, write=False) == (1, 3, TransactionStatus.IDLE)

    def broken_off(tx: Transaction) -> None:
        with tx.stream(select(Network.id)) as rows:
            next(iter(rows))
            raise LookupError("the reader gave up")

    with pytest.raises(LookupError):
        db.runner.run(broken_off, write=False)
    status = db.runner.run(lambda tx: tx.connection.connection.driver_connection.info.transaction_status, write=False)
    assert status == TransactionStatus.IDLE


@pytest.mark.slow
def test_a_burst_wider_than_the_pool_opens_no_connection_per_request(postgres: Database, tmp_path: Any) -> None:
    """A worker runs no more transactions at once than it keeps connections (``db_connections``): requests
    beyond that wait their turn. Before, a burst went past the pool's five into its overflow, and each
    overflow connection was closed as it came back, so that every request of a burst could cost
    PostgreSQL a new backend process (300-400 new sessions for 1,600 port creates of 32 clients)."""
    url = postgres.settings.database_url
    network = postgres.run(lambda u: local.create(u, "network", {"name": "burst"}))
    postgres.run(
        lambda u: local.create(u, "subnet", {"network_id": network["id"], "cidr": "10.0.0.0/16", "ip_version": 4})
    )
    name = make_url(normalise_url(url)).database
    server = Server(url, "internal", tmp_path / "serve.log", workers="1", db_connections="3")
    try:
        with postgres.engine.connect() as watcher:  # one session of its own, opened before the count

            def sessions() -> int:
                statement = text("SELECT sessions FROM pg_stat_database WHERE datname = :name")
                count = int(watcher.execute(statement, {"name": name}).scalar_one())
                watcher.rollback()  # a transaction keeps its first view of the statistics
                return count

            before = sessions()
            with httpx.Client(base_url=server.base, timeout=60, limits=httpx.Limits(max_connections=24)) as http:

                def create(_: int) -> int:
                    return http.post("/v2.0/ports", json={"port": {"network_id": network["id"]}}).status_code

                with ThreadPoolExecutor(24) as pool:
                    for _ in range(3):  # three bursts of 24 at once
                        assert sorted(set(pool.map(create, range(24)))) == [201]
            opened = sessions() - before
    finally:
        server.stop()
    assert opened <= 3, f"the server opened {opened} connections for 72 requests with db_connections=3"
