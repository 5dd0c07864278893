from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.databases import reset as reset_database
from tests.databases import KINDS, SKIPPED, drop_created, url_for
from tests.galera import GaleraCluster

# The session fixture nautobot_server: a private Nautobot (one per xdist worker that needs it).
pytest_plugins = ["tests.nautobot_server"]

BACKENDS = ["builtin", "internal"]

# A third-party driver distribution (tests/plugins), found through its entry point like any installed one;
# subprocesses (pipam serve, pipam ipam) see it through PYTHONPATH.
PLUGINS = str(Path(__file__).parent / "plugins")
sys.path.insert(0, PLUGINS)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (PLUGINS, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="session", params=KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def new_schema(kind: str, tmp_dir: str, purpose: str = "t") -> str:
    """The URL of this worker's database of ``kind`` for ``purpose``, at the current schema."""
    url = url_for(kind, tmp_dir, purpose)
    database = Database(load_settings(database_url=url))
    upgrade_database(database.engine, "internal")
    database.dispose()
    return url


@pytest.fixture(scope="session")
def schema_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return new_schema(db_kind, str(tmp_path_factory.mktemp(db_kind)))


DIALECTS = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mysql"}


@pytest.fixture(autouse=True)
def _database_as_labelled(request: pytest.FixtureRequest) -> None:
    """A test labelled with one database runs on that one. A session fixture that depends on a fixture
    overridden in a subdirectory (``db_kind`` in tests/api) keeps the value it cached for the other
    definition (pytest-dev/pytest#2844): a test of tests/ after one of tests/api/ on the same xdist worker
    got the API cases' MariaDB while labelled SQLite. tests/api has its own ``schema_url``; this catches a
    fixture that brings the mix-up back."""
    if "schema_url" in request.fixturenames and "db_kind" in request.fixturenames:
        kind, url = request.getfixturevalue("db_kind"), request.getfixturevalue("schema_url")
        assert make_url(url).get_backend_name() == DIALECTS[kind], f"labelled {kind}, runs on {url}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def reset(database: Database, backend: str) -> None:
    """Each test starts from an empty database whose active backend is ``backend``."""
    reset_database(database.engine, backend)


@pytest.fixture
def db(schema_url: str, backend: str) -> Iterator[Database]:
    database = Database(load_settings(database_url=schema_url, ipam_driver=backend))
    reset(database, backend)
    yield database
    database.dispose()


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    drop_created()  # each worker drops the databases it made


@pytest.fixture(scope="session")
def galera_cluster() -> Iterator[GaleraCluster]:
    """One private 3-node Galera cluster per session (per xdist worker: keep its tests in the xdist
    group "galera"); tests that kill nodes should call ``heal()`` first (see tests/test_galera.py)."""
    cluster = GaleraCluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def _database_skip(report) -> str | None:  # type: ignore[no-untyped-def]
    """The reason of a skip because a database server is not reachable (tests/databases.py), else None."""
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and " not reachable at " in str(longrepr[2]):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """One line per database that was not tested, with how many tests it skipped, instead of one line
    per test in the short summary (also under xdist, where skips come from workers). The skips are
    still counted in the last line, as "skipped (database not reachable)"."""
    per_database: dict[str, list[str]] = {}
    for kind, reason in SKIPPED.items():
        per_database.setdefault(kind, [reason])
    kept, moved = [], []
    for report in terminalreporter.stats.get("skipped", []):
        reason = _database_skip(report)
        if reason is None:
            kept.append(report)
            continue
        moved.append(report)
        kind = reason.split(" ", 1)[0]
        per_database.setdefault(kind, [reason])
        per_database[kind].append(reason)
    if moved:
        terminalreporter.stats["skipped"] = kept
        if not kept:
            del terminalreporter.stats["skipped"]
        terminalreporter.stats.setdefault("skipped (database not reachable)", []).extend(moved)
    for kind in sorted(per_database):
        reason, count = per_database[kind][0], len(per_database[kind]) - 1
        tests = f" ({count} tests)" if count else ""
        terminalreporter.write_line(f"database tests SKIPPED: {reason}{tests}", yellow=True)
