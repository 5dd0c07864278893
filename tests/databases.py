"""The test database matrix: SQLite always; PostgreSQL and MariaDB where reachable.

Each pytest-xdist worker of each test run gets databases of its own (two checkouts testing at once on
one server must not drop each other's databases), dropped again when the run ends. Under CI (CI=true)
an unreachable server is a failure, not a skip, so that a green CI run really covered all three.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache

import pytest
from sqlalchemy.engine import make_url

from pipam.db.engine import normalise_url
from pipam.testing.databases import drop, recreate

ADMIN_URLS = {
    "postgresql": os.environ.get("PIPAM_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("PIPAM_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
KINDS = ["sqlite", "postgresql", "mariadb"]
SKIPPED: dict[str, str] = {}


CREATED: set[tuple[str, str]] = set()  # (kind, database name) this process made


def worker() -> str:
    """This worker of this test run: xdist's run id is shared by the workers of one run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"p{os.getpid()}"
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{run[:8]}"


def drop_created() -> None:
    for kind, name in sorted(CREATED):
        with contextlib.suppress(Exception):  # a server that went away has nothing left to drop
            drop(normalise_url(ADMIN_URLS[kind]), name)
    CREATED.clear()


@cache
def server_url(kind: str, purpose: str = "t") -> str:
    """A fresh, empty database named for this worker and purpose; skips when the server is absent."""
    admin = normalise_url(ADMIN_URLS[kind])
    name = f"pipam_{purpose}_{worker()}"
    try:
        url = recreate(admin, name)
        CREATED.add((kind, name))
        return url
    except Exception as exc:  # any connection failure means: not available here
        reason = f"{kind} not reachable at {make_url(admin).render_as_string()}: {str(exc).splitlines()[0]}"
        SKIPPED[kind] = reason
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires {kind}: {reason}")
        pytest.skip(reason)


def fresh_url(kind: str, tmp_dir: str, purpose: str) -> str:
    """A new empty database every call (``url_for`` hands each worker the same one per purpose)."""
    if kind == "sqlite":
        return url_for(kind, tmp_dir, purpose)
    server_url(kind, purpose)  # skips (or fails under CI) when the server is absent
    return recreate(normalise_url(ADMIN_URLS[kind]), f"pipam_{purpose}_{worker()}")


def url_for(kind: str, tmp_dir: str, purpose: str = "t") -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_dir}/pipam-{purpose}.db"
    return server_url(kind, purpose)
