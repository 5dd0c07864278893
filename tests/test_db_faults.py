"""Database faults while clients create ports: PostgreSQL stopped and restarted, connections killed.

The server must answer 503 (not hang, not 500) while the database is away, recover by itself, and
leave the core tables and the active backend in agreement, no address given twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from pipam.config import load_settings
from pipam.db.engine import normalise_url
from pipam.db.models import IPAllocation
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from tests.helpers import net, subnet
from tests.load import Answer, PortLoad
from tests.private_postgres import PrivatePostgres
from tests.server import Server

PIPAM = str(Path(sys.executable).with_name("pipam"))


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.destroy()


def prepare(url: str, backend: str) -> tuple[Database, str]:
    db = Database(load_settings(database_url=url, ipam_driver=backend))
    upgrade_database(db.engine, backend)
    n = net(db)["id"]
    subnet(db, n, "10.77.0.0/20")
    return db, n


def check_consistent(db: Database, url: str, backend: str, network_id: str, answers: list[Answer]) -> None:
    assert all(a.status != 0 for a in answers), Counter(a.error for a in answers if a.status == 0)
    handed = [(a.detail, a.extra) for a in answers if a.status == 201]
    assert len({ip for ip, _ in handed}) == len(handed), "an address was handed out twice"
    # Through the Runner, as the server reads: the outage also killed the connections this test's pool holds.
    held = db.run(
        lambda u: set(
            u.session.execute(
                select(IPAllocation.ip_address, IPAllocation.port_id).where(IPAllocation.network_id == network_id)
            ).all()
        ),
        write=False,
    )
    # Every 201 is held. A commit whose reply the outage swallowed may hold one more, answered 503.
    assert set(handed) <= held
    assert len(held) - len(handed) <= sum(1 for a in answers if a.status == 503)
    env = {**os.environ, "PIPAM_DATABASE_URL": url}
    done = subprocess.run([PIPAM, "ipam", "verify"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["builtin", "internal"])
def test_postgres_stopped_and_restarted(pg, backend, tmp_path):
    db, n = prepare(pg.url, backend)
    server = Server(pg.url, backend, tmp_path / "serve.log")
    try:
        with PortLoad([server.base], n, per_base=3) as load:
            time.sleep(1.5)
            down_at = time.monotonic()
            pg.stop()
            time.sleep(3)
            up_at = time.monotonic()
            pg.start()
            time.sleep(3)
        answers = list(load.answers)
        statuses = Counter((a.status, a.error) for a in answers if a.status != 201)
        assert set(statuses) <= {(503, "DatabaseUnavailable")}, statuses
        during = [a for a in answers if down_at + 0.5 < a.started < up_at - 0.5]
        assert during and all(a.status == 503 for a in during), Counter(a.status for a in during)
        assert all(a.extra.isdigit() for a in during)  # Retry-After
        after = [a for a in answers if a.started > up_at + 1.5]
        assert after and all(a.status == 201 for a in after), "the server did not recover by itself"
        # Every request is recorded, time-outs included (the clients' limit is 30 s).
        assert load.slowest < 15, f"a request hung for {load.slowest:.1f} s"
    finally:
        server.stop()
    check_consistent(db, pg.url, backend, n, answers)
    db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["builtin", "internal"])
def test_connections_killed_mid_transaction(pg, backend, tmp_path):
    db, n = prepare(pg.url, backend)
    server = Server(pg.url, backend, tmp_path / "serve.log", workers="2")
    killer = create_engine(normalise_url(pg.url), isolation_level="AUTOCOMMIT")
    killed = 0
    try:
        with PortLoad([server.base], n, per_base=4) as load:
            deadline = time.monotonic() + 5
            with killer.connect() as conn:
                while time.monotonic() < deadline:
                    killed += conn.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                            "AND backend_type = 'client backend'"
                        )
                    ).scalar_one()
                    time.sleep(0.15)
            time.sleep(1.5)
        answers = list(load.answers)
    finally:
        server.stop()
        killer.dispose()
    assert killed > 5
    statuses = Counter((a.status, a.error) for a in answers if a.status != 201)
    assert set(statuses) <= {(503, "DatabaseUnavailable")}, statuses
    assert sum(1 for a in answers if a.status == 201) > 20
    check_consistent(db, pg.url, backend, n, answers)
    db.dispose()
