from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from tests.conftest import reset
from tests.server import Server

MAX_PAGE_SIZE = 100  # of the ``server`` fixture
MAX_BULK = 50


@pytest.fixture(scope="session", params=["builtin", "internal"])
def api_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def server(schema_url: str, api_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = Database(load_settings(database_url=schema_url, ipam_driver=api_backend))
    reset(database, api_backend)
    database.dispose()
    srv = Server(
        schema_url,
        api_backend,
        tmp_path_factory.mktemp("log") / "serve.log",
        max_bulk=str(MAX_BULK),
        max_page_size=str(MAX_PAGE_SIZE),
    )
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server, schema_url: str, api_backend: str) -> Iterator[httpx.Client]:
    database = Database(load_settings(database_url=schema_url, ipam_driver=api_backend))
    reset(database, api_backend)
    database.dispose()
    with httpx.Client(base_url=server.base, timeout=30) as client:
        yield client


ADMIN_TOKEN = "admin-tok"
PROJECT_TOKENS = {"tok-a": "proj-a", "tok-b": "proj-b"}
PHYSNET_MTU = 9000


@pytest.fixture(scope="session")
def guarded_url(api_backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('guarded')}/guarded.db"
    database = Database(load_settings(database_url=url, ipam_driver=api_backend))
    upgrade_database(database.engine, api_backend)
    database.dispose()
    return url


@pytest.fixture(scope="session")
def guarded_server(guarded_url: str, api_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server (SQLite) with an admin token, two project tokens and a jumbo-frame physical network."""
    srv = Server(
        guarded_url,
        api_backend,
        tmp_path_factory.mktemp("guardedlog") / "serve.log",
        api_token=ADMIN_TOKEN,
        project_tokens=json.dumps(PROJECT_TOKENS),
        global_physnet_mtu=str(PHYSNET_MTU),
    )
    yield srv
    srv.stop()


@pytest.fixture
def clients(guarded_server: Server, guarded_url: str, api_backend: str) -> Iterator[dict[str, httpx.Client]]:
    """admin, a (project proj-a) and b (project proj-b), on an emptied database."""
    database = Database(load_settings(database_url=guarded_url, ipam_driver=api_backend))
    reset(database, api_backend)
    database.dispose()
    tokens = {"admin": ADMIN_TOKEN, "a": "tok-a", "b": "tok-b"}
    made = {
        who: httpx.Client(base_url=guarded_server.base, headers={"X-Auth-Token": tok}, timeout=30)
        for who, tok in tokens.items()
    }
    yield made
    for c in made.values():
        c.close()
