from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipam.config import load_settings
from pipam.ipam.drivers.nautobot.client import NautobotClient
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.local import LocalClient
from tests.conftest import BACKENDS, new_schema, reset
from tests.databases import KINDS
from tests.nautobot_server import NautobotServer
from tests.server import Server

MAX_PAGE_SIZE = 100  # of the ``server`` fixture
MAX_BULK = 50

# The API cases on the Nautobot driver (issue 11): like the other Nautobot tests, slow (a real Nautobot) and
# on the one xdist worker that runs the session's Nautobot.
NAUTOBOT_MARKS = [pytest.mark.nautobot, pytest.mark.slow, pytest.mark.xdist_group("nautobot")]


@pytest.fixture(scope="session")
def db_kind(request: pytest.FixtureRequest) -> str:
    """Overrides tests/conftest.py's: parametrized below, together with ``api_backend``."""
    return str(request.param)


@pytest.fixture(scope="session")
def schema_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Overrides tests/conftest.py's, whose cached value would outlive this directory's ``db_kind`` (see
    ``_database_as_labelled`` there); a database of its own, apart from the other tests' (an API
    server of the session stays connected to it)."""
    return new_schema(db_kind, str(tmp_path_factory.mktemp(f"api-{db_kind}")), "api")


@pytest.fixture(scope="session")
def api_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every database with builtin and internal; and, in modules that set ``NAUTOBOT = True``, the tests on
    the ``server`` or ``guarded_server`` fixture also with the Nautobot driver, on SQLite only (the driver
    keeps no tables of its own, so the database adds nothing there, while each case costs seconds of a real
    Nautobot)."""
    names = metafunc.fixturenames
    if "db_kind" in names and "api_backend" in names:
        combos = [pytest.param(kind, backend, id=f"{kind}-{backend}") for kind in KINDS for backend in BACKENDS]
        if getattr(metafunc.module, "NAUTOBOT", False) and ("server" in names or "guarded_server" in names):
            combos.append(pytest.param("sqlite", "nautobot", id="sqlite-nautobot", marks=NAUTOBOT_MARKS))
        metafunc.parametrize(("db_kind", "api_backend"), combos, indirect=True, scope="session")
    elif "db_kind" in names:
        metafunc.parametrize("db_kind", KINDS, indirect=True, scope="session")
    elif "api_backend" in names:
        backends: list[Any] = list(BACKENDS)
        if getattr(metafunc.module, "NAUTOBOT", False) and "guarded_server" in names:
            backends.append(pytest.param("nautobot", marks=NAUTOBOT_MARKS))
        metafunc.parametrize("api_backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def api_nautobot(request: pytest.FixtureRequest) -> dict[str, str]:
    """The Nautobot driver's settings for the API cases: the session's Nautobot (``nautobot_server``, skipped
    where it cannot run) and a namespace of their own, which ``api`` empties before each test."""
    return nautobot_settings(request.getfixturevalue("nautobot_server"), "api")


def nautobot_settings(server: NautobotServer, what: str) -> dict[str, str]:
    """The driver's settings for a new namespace of the session's Nautobot."""
    name = f"pipam-{what}-{uuid.uuid4().hex[:10]}"
    with NautobotClient(server.url, server.token, timeout=60) as client:
        client.create_namespace(name)
    return {"url": server.url, "token": server.token, "namespace": name, "timeout": "30"}


@pytest.fixture(scope="session")
def api_drivers(api_backend: str, request: pytest.FixtureRequest) -> dict[str, dict[str, str]]:
    """The ``drivers`` setting of the API servers (and of the tests' own look at their database)."""
    return {"nautobot": request.getfixturevalue("api_nautobot")} if api_backend == "nautobot" else {}


def api_database(url: str, backend: str, drivers: dict[str, Any]) -> Database:
    return Database(load_settings(database_url=url, ipam_driver=backend, drivers=drivers))


def verify_clean(schema_url: str, backend: str, drivers: dict[str, Any]) -> None:
    """The active backend still agrees with the core tables (address changes went through the engine)."""
    db = api_database(schema_url, backend, drivers)
    try:
        result = LocalClient(db).verify()
        assert result.clean, result
    finally:
        db.dispose()


def empty_nautobot(table: dict[str, str]) -> None:
    """Delete every ip-address and prefix of the API cases' namespace (all of them made by Pipam)."""
    with NautobotClient(table["url"], table["token"], timeout=60) as client:
        ns = client.namespace(table["namespace"])["id"]
        client.bulk_delete_ips([ip["id"] for ip in client.ips(ns, exclude_m2m="true")])
        client.bulk_delete_prefixes([p["id"] for p in client.prefixes(ns, exclude_m2m="true")])


def driver_env(drivers: dict[str, dict[str, str]]) -> dict[str, str]:
    """``drivers`` as the ``Server`` settings that become ``PIPAM_DRIVERS__<DRIVER>__<KEY>``."""
    return {f"drivers__{driver}__{key}": value for driver, table in drivers.items() for key, value in table.items()}


@contextlib.contextmanager
def emptied(url: str, backend: str, drivers: dict[str, dict[str, str]]) -> Iterator[None]:
    """One test on an emptied database (and Nautobot namespace); on Nautobot, checked afterwards that what
    the test did through the API is in Nautobot exactly (refused requests left nothing there)."""
    database = api_database(url, backend, drivers)
    try:
        reset(database, backend)
        if "nautobot" in drivers:
            empty_nautobot(drivers["nautobot"])
        yield
        if backend == "nautobot":
            result = LocalClient(database).verify()
            assert result.clean, result
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def server(
    schema_url: str, api_backend: str, api_drivers: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    database = api_database(schema_url, api_backend, api_drivers)
    reset(database, api_backend)
    database.dispose()
    srv = Server(
        schema_url,
        api_backend,
        tmp_path_factory.mktemp("log") / "serve.log",
        max_bulk=str(MAX_BULK),
        max_page_size=str(MAX_PAGE_SIZE),
        **driver_env(api_drivers),
    )
    yield srv
    srv.stop()


def client_timeout(backend: str) -> float:
    """Seconds a test waits for an answer. A bulk create that runs out of addresses on Nautobot makes
    about a hundred calls to it (27 ports over two /28: 24 s on a quiet machine), and under CI's load
    took more than 30 s; the tests check what it answers, not how fast."""
    return 120 if backend == "nautobot" else 30


@pytest.fixture
def api(
    server: Server, schema_url: str, api_backend: str, api_drivers: dict[str, dict[str, str]]
) -> Iterator[httpx.Client]:
    with (
        emptied(schema_url, api_backend, api_drivers),
        httpx.Client(base_url=server.base, timeout=client_timeout(api_backend)) as client,
    ):
        yield client


ADMIN_TOKEN = "admin-tok"
PROJECT_TOKENS = {"tok-a": "proj-a", "tok-b": "proj-b"}
PHYSNET_MTU = 9000


@pytest.fixture(scope="session")
def guarded_url(
    api_backend: str, api_drivers: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('guarded')}/guarded.db"
    database = api_database(url, api_backend, api_drivers)
    upgrade_database(database.engine, api_backend)
    database.dispose()
    return url


@pytest.fixture(scope="session")
def guarded_server(
    guarded_url: str,
    api_backend: str,
    api_drivers: dict[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server (SQLite) with an admin token, two project tokens and a jumbo-frame physical network."""
    srv = Server(
        guarded_url,
        api_backend,
        tmp_path_factory.mktemp("guardedlog") / "serve.log",
        api_token=ADMIN_TOKEN,
        project_tokens=json.dumps(PROJECT_TOKENS),
        global_physnet_mtu=str(PHYSNET_MTU),
        **driver_env(api_drivers),
    )
    yield srv
    srv.stop()


@pytest.fixture
def clients(
    guarded_server: Server, guarded_url: str, api_backend: str, api_drivers: dict[str, dict[str, str]]
) -> Iterator[dict[str, httpx.Client]]:
    """admin, a (project proj-a) and b (project proj-b), on an emptied database."""
    tokens = {"admin": ADMIN_TOKEN, "a": "tok-a", "b": "tok-b"}
    timeout = client_timeout(api_backend)
    made = {
        who: httpx.Client(base_url=guarded_server.base, headers={"X-Auth-Token": tok}, timeout=timeout)
        for who, tok in tokens.items()
    }
    with emptied(guarded_url, api_backend, api_drivers):
        yield made
    for c in made.values():
        c.close()
