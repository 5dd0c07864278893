"""How SQLite transactions begin: a change takes the write lock at its BEGIN, before its first write; a
read never waits for another connection's write lock, whether the Runner or a session handed out for
tools runs it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from pipam.config import load_settings
from pipam.db.models import Network
from pipam.service.database import Database
from tests.conftest import new_schema
from tests.helpers import net


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[tuple[Database, str]]:
    url = new_schema("sqlite", str(tmp_path), "begin")
    db = Database(load_settings(database_url=url))
    net(db)
    yield db, url.removeprefix("sqlite:///")
    db.dispose()


def other_connection(path: str) -> sqlite3.Connection:
    """Another process's view of the file: autocommit, and no waiting for a lock."""
    return sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)


def takes_the_write_lock(path: str) -> bool:
    other = other_connection(path)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()  # rolls back what it began
    return True


def count_networks(s: Any) -> int:
    return int(s.scalar(select(func.count()).select_from(Network)))


def test_a_change_holds_the_write_lock_from_its_first_statement(sqlite_db):
    db, path = sqlite_db
    seen: list[bool] = []

    def change(u: Any) -> None:
        count_networks(u.session)  # a read first: a deferred BEGIN would not have the lock yet
        seen.append(takes_the_write_lock(path))

    db.run(change)
    assert seen == [False]
    assert takes_the_write_lock(path)  # and gives it back at its end


def test_a_tools_write_session_holds_the_write_lock_from_its_first_statement(sqlite_db):
    db, path = sqlite_db
    with db.session() as s:
        count_networks(s)
        assert not takes_the_write_lock(path)
    assert takes_the_write_lock(path)


def test_reads_do_not_take_or_wait_for_the_write_lock(sqlite_db):
    db, path = sqlite_db
    holder = other_connection(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        # Both would fail with "database is locked" (busy timeout 0 below) or wait 60 s as changes.
        assert db.run(lambda u: count_networks(u.session), write=False) == 1
        with db.session(write=False) as s:
            assert count_networks(s) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_read_beside_an_open_change_does_not_take_its_lock(sqlite_db):
    db, path = sqlite_db
    with db.session(write=False) as s:
        count_networks(s)
        assert takes_the_write_lock(path)


def test_a_sqlite_engine_has_no_listener_of_its_own(sqlite_db):
    """SQLAlchemy dispatches its execution events around every statement of an engine that has any
    listener of its own (``Engine._has_events``): that cost a port create a tenth of its instructions.
    Pool events (``connect``) do not count."""
    db, _ = sqlite_db
    assert not db.engine._has_events
    assert not db.runner._read_engine._has_events
