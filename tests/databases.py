"""The test database matrix: SQLite always; PostgreSQL and MariaDB where reachable.

Each pytest-xdist worker gets databases of its own. Under CI (CI=true) an unreachable server is a
failure, not a skip, so that a green CI run really covered all three databases.
"""

from __future__ import annotations

import os
from functools import cache

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipam.db.engine import normalise_url

ADMIN_URLS = {
    "postgresql": os.environ.get("PIPAM_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("PIPAM_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
KINDS = ["sqlite", "postgresql", "mariadb"]
SKIPPED: dict[str, str] = {}


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@cache
def server_url(kind: str, purpose: str = "t") -> str:
    """A fresh, empty database named for this worker and purpose; skips when the server is absent."""
    admin = normalise_url(ADMIN_URLS[kind])
    name = f"pipam_{purpose}_{worker()}"
    try:
        return recreate(admin, name)
    except Exception as exc:  # any connection failure means: not available here
        reason = f"{kind} not reachable at {make_url(admin).render_as_string()}: {str(exc).splitlines()[0]}"
        SKIPPED[kind] = reason
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires {kind}: {reason}")
        pytest.skip(reason)


def recreate(admin_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``admin_url``; returns the new database's URL."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def url_for(kind: str, tmp_dir: str, purpose: str = "t") -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_dir}/pipam-{purpose}.db"
    return server_url(kind, purpose)
