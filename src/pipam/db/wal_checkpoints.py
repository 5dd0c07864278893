"""SQLite's WAL checkpoints in a thread of their own instead of inside a request's commit.

A checkpoint copies the pages the write-ahead log holds back into the database file and syncs both
(two fsyncs with ``synchronous=NORMAL``). By default SQLite runs one in the connection that commits
once the log passes 1,000 pages. A port create writes about 22 pages, so every 46th create paid for
one: 6-7 ms on this VM, more than half of all the time commits took and the whole of a create's p99
(bench/README.md, twelfth round).

Here a thread per database file runs them (PASSIVE: never waiting for a reader or a writer), at most
every ``INTERVAL`` seconds while writes come in, so copying and syncing overlap the requests instead of
delaying one of them. SQLite's step releases the GIL, so the copy runs on another core. Writers keep
their own checkpoint as a backstop at ``BACKSTOP_PAGES``: the log is restarted from its beginning only
after a checkpoint that caught up with every commit, which a thread racing steady writes rarely does,
and a log growing without end would fill the disk and slow readers, which search it for every page.
The thread starts at the first write and ends after ``IDLE`` seconds without one, or when the engine
is disposed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from urllib.parse import quote

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import QueuePool

log = logging.getLogger("pipam.db")

# Seconds between checkpoints while writes keep coming: about 1,000-3,000 pages at this VM's rates of a
# few hundred creates a second, the size SQLite's own checkpoints work in.
INTERVAL = 0.1
# Seconds without a write after which the thread and its connection end (a process that only reads, or
# an engine dropped without dispose(), keeps no thread).
IDLE = 2.0
# Pages the log may reach before a committing writer checkpoints it itself (SQLite's default is 1,000):
# about 40 MB, a few hundred creates' worth of what the thread has not copied yet.
BACKSTOP_PAGES = 10_000


class WalCheckpoints:
    """The background checkpoints of one SQLite database file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = 0  # checkpoints run (tests read it)
        self._fresh()
        _ALL.add(self)

    def _fresh(self) -> None:
        """No thread yet, nothing wanted. Also a forked child's start: the parent's thread is not in the
        child, and a lock some thread of the parent held at the fork would stay held there for ever."""
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def wake(self) -> None:
        """A write committed: checkpoint soon. Called on every commit, so while the thread runs and a
        checkpoint is already wanted it only reads the event's flag and the thread."""
        if not self._wanted.is_set():
            self._wanted.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._guard:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="pipam-wal-checkpoints", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread after one last checkpoint, and wait for it. A later write starts a new one (an
        engine may be used again after ``dispose``)."""
        with self._guard:
            self._stopping.set()
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join()
        self._stopping.clear()

    def _run(self) -> None:
        try:
            # Read-write, never create: a file removed meanwhile (a test's) is not made again empty.
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            log.debug("no background WAL checkpoints for %s: %s", self.path, exc)
            with self._guard:
                self._thread = None
            return
        try:
            while self._writes_came():
                stopping = self._stopping.wait(INTERVAL)  # the commits of the interval, in one checkpoint
                self._wanted.clear()
                self._checkpoint(conn)
                if stopping:
                    with self._guard:
                        self._thread = None
                    return
        finally:
            conn.close()

    def _writes_came(self) -> bool:
        """Wait for a write: True when one came, False when none did for ``IDLE`` seconds (the thread ends)."""
        if self._wanted.wait(IDLE):
            return True
        with self._guard:
            # Under the guard: a ``wake`` that saw this thread still running has set the event by now,
            # and one that comes later sees no thread and starts another.
            if self._wanted.is_set():
                return True
            self._thread = None
            return False

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.done += 1
        except sqlite3.Error as exc:
            # Another process's checkpoint holds the file, or the file went away under a test; a writer's
            # own checkpoint (BACKSTOP_PAGES) still bounds the log.
            log.debug("background WAL checkpoint of %s skipped: %s", self.path, exc)


_ALL: weakref.WeakSet[WalCheckpoints] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for checkpoints in list(_ALL):
        checkpoints._fresh()


os.register_at_fork(after_in_child=_after_fork_in_child)

_OF_ENGINE: weakref.WeakKeyDictionary[Engine, WalCheckpoints] = weakref.WeakKeyDictionary()


class CheckpointedPool(QueuePool):
    """The pool of a SQLite file's engine: disposing of it (``Engine.dispose``) ends the file's thread,
    after a last checkpoint. An "engine_disposed" listener would do the same, but any listener on the
    engine makes SQLAlchemy dispatch its execution events around every statement (``pipam.db.engine``)."""

    checkpoints: WalCheckpoints | None = None
    # Logs as SQLAlchemy's pool does ("Pool recreating" at INFO), not under Pipam's own loggers.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.QueuePool"

    def dispose(self) -> None:
        super().dispose()
        if self.checkpoints is not None:
            self.checkpoints.stop()

    def recreate(self) -> QueuePool:
        pool = super().recreate()
        pool.checkpoints = self.checkpoints  # type: ignore[attr-defined]
        return pool


def file_of(url: URL) -> str | None:
    """The database file a SQLite URL names, resolved now; None for an in-memory database or a URI.
    Resolved as the engine's first connection resolves it: the thread connects later, and a relative
    path read against another working directory would miss the file on every attempt."""
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query.get("uri"):
        return None
    return os.path.abspath(path)


def attach(engine: Engine, path: str) -> None:
    """Background checkpoints for ``path``, the database file of ``engine`` (``file_of`` its URL), made
    with ``CheckpointedPool``: its connections checkpoint themselves only past ``BACKSTOP_PAGES``."""
    if not isinstance(engine.pool, CheckpointedPool):
        raise TypeError(f"background checkpoints need a CheckpointedPool, not {type(engine.pool).__name__}")
    checkpoints = WalCheckpoints(path)
    _OF_ENGINE[engine] = checkpoints
    engine.pool.checkpoints = checkpoints

    @event.listens_for(engine, "connect")  # a pool event: it costs nothing per statement
    def on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")


def of_engine(engine: Engine) -> WalCheckpoints | None:
    return _OF_ENGINE.get(engine)
