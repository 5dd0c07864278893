"""The tests' view of lock waits (``tests.held_change``), which the fence tests rely on to know that a
change really waits: it must see a wait that begins while it is already looking."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from pipam.db.engine import make_engine
from tests.databases import fresh_url
from tests.held_change import wait_until_blocked


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_wait_that_begins_after_the_first_look_is_seen(kind: str, tmp_path: Path) -> None:
    """MariaDB refreshes innodb_trx only after 0.1 s unread: polled faster, it kept showing the rows of
    the first read, and a wait that began after it was never seen (the fence tests then failed at the
    lock wait timeout)."""
    url = fresh_url(kind, str(tmp_path), "locks")
    engine = make_engine(url)
    go = threading.Event()
    outcome: list[BaseException | None] = []

    def write() -> None:
        go.wait(30)
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE probe SET v = v + 1 WHERE id = 1"))
        except BaseException as exc:  # the lock wait timing out, say: reported below
            outcome.append(exc)
        else:
            outcome.append(None)

    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, v INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1, 0)"))
        with engine.connect() as holder:
            holder.execute(text("UPDATE probe SET v = v + 1 WHERE id = 1"))  # its transaction holds the row
            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            # The writer starts waiting while the watcher has looked several times already.
            threading.Timer(1.0, go.set).start()
            started = time.monotonic()
            wait_until_blocked(url, writer, timeout=15)
            seen_after = time.monotonic() - started
            holder.rollback()
        writer.join(30)
        assert outcome == [None]
        assert seen_after >= 0.9  # it was not seen before it began
    finally:
        go.set()
        engine.dispose()
