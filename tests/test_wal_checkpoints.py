"""SQLite's WAL checkpoints run in a background thread: what a change commits reaches the database file
without a request paying for the copy, the thread ends when writes stop or the engine is disposed, and
a database with no file gets none."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pipam.config import load_settings
from pipam.db import wal_checkpoints
from pipam.db.engine import make_engine
from pipam.service.database import Database
from tests.conftest import new_schema
from tests.helpers import net


def _until(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[tuple[Database, Path]]:
    url = new_schema("sqlite", str(tmp_path), "wal")
    db = Database(load_settings(database_url=url))
    yield db, Path(url.removeprefix("sqlite:///"))
    db.dispose()


def _names_in_file_alone(path: Path, tmp: Path) -> set[str]:
    """The network names a copy of the database file holds without its write-ahead log: what a
    checkpoint has copied there."""
    copy = tmp / "alone.db"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return {name for (name,) in conn.execute("SELECT name FROM networks")}
    finally:
        conn.close()


def test_a_committed_change_reaches_the_database_file_in_the_background(sqlite_db, tmp_path):
    db, path = sqlite_db
    checkpoints = wal_checkpoints.of_engine(db.engine)
    assert checkpoints is not None
    before = checkpoints.done
    net(db, name="checkpointed")
    # No writer's own checkpoint copies a few pages (they wait for BACKSTOP_PAGES): the thread does.
    assert _until(lambda: checkpoints.done > before)
    assert "checkpointed" in _names_in_file_alone(path, tmp_path)


def test_writers_checkpoint_themselves_only_past_the_backstop(sqlite_db):
    db, _ = sqlite_db
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == wal_checkpoints.BACKSTOP_PAGES


def test_the_thread_ends_when_writes_stop_and_comes_back_with_the_next(sqlite_db, monkeypatch, tmp_path):
    db, path = sqlite_db
    monkeypatch.setattr(wal_checkpoints, "IDLE", 0.2)
    checkpoints = wal_checkpoints.of_engine(db.engine)
    net(db, name="first")
    assert checkpoints.running
    assert _until(lambda: not checkpoints.running)
    net(db, name="second")
    assert checkpoints.running
    assert _until(lambda: "second" in _names_in_file_alone(path, tmp_path))


def test_dispose_ends_the_thread_after_a_last_checkpoint(sqlite_db, tmp_path, monkeypatch):
    db, path = sqlite_db
    monkeypatch.setattr(wal_checkpoints, "INTERVAL", 30.0)  # only the last checkpoint can copy it
    checkpoints = wal_checkpoints.of_engine(db.engine)
    net(db, name="last")
    assert checkpoints.running
    db.dispose()
    assert not checkpoints.running
    assert "last" in _names_in_file_alone(path, tmp_path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_thread(sqlite_db):
    db, _ = sqlite_db
    checkpoints = wal_checkpoints.of_engine(db.engine)
    net(db, name="before the fork")
    assert checkpoints.running
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not here, and a write must start one
        code = 1
        try:
            if not checkpoints.running:
                checkpoints.wake()
                code = 0 if checkpoints.running else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_removed_file_is_not_made_again(tmp_path):
    path = tmp_path / "gone.db"
    sqlite3.connect(path).close()
    checkpoints = wal_checkpoints.WalCheckpoints(str(path))
    path.unlink()
    checkpoints.wake()
    assert _until(lambda: not checkpoints.running)
    assert not path.exists()


def test_no_thread_for_a_database_in_memory():
    engine = make_engine("sqlite://")
    try:
        assert wal_checkpoints.of_engine(engine) is None
    finally:
        engine.dispose()


def test_a_relative_path_is_the_file_the_engine_opened(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite:///relative.db")
    try:
        checkpoints = wal_checkpoints.of_engine(engine)
        assert checkpoints is not None and checkpoints.path == str(tmp_path / "relative.db")
    finally:
        engine.dispose()


def test_the_pool_logs_as_sqlalchemys_pool_does(sqlite_db):
    """The pool's messages ("Pool recreating" when a server stops) stay under SQLAlchemy's logger, which
    Pipam does not configure (Python's default shows warnings only), not under Pipam's own, at INFO."""
    db, _ = sqlite_db
    assert isinstance(db.engine.pool, wal_checkpoints.CheckpointedPool)
    assert db.engine.pool.logger.name.startswith("sqlalchemy.pool.")
