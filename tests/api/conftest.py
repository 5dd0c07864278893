from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pipam.config import load_settings
from pipam.service.database import Database
from tests.conftest import reset
from tests.server import Server


@pytest.fixture(scope="session", params=["builtin", "internal"])
def api_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def server(schema_url: str, api_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = Database(load_settings(database_url=schema_url, ipam_driver=api_backend))
    reset(database, api_backend)
    database.dispose()
    srv = Server(
        schema_url, api_backend, tmp_path_factory.mktemp("log") / "serve.log", max_bulk="50", max_page_size="100"
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
