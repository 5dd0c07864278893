"""A change tried on the event loop (SQLite): it runs at once, or it is refused at once and leaves nothing
behind, so that the caller can run it in a thread. Never does it wait for a lock on the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from pipam.api import context, resources
from pipam.api.app import create_app_from_env
from pipam.config import load_settings
from pipam.db.models import IpamGate, Port
from pipam.errors import HeldInProcess, NotNow
from pipam.ipam.drivers.internal.driver import InternalDriver
from pipam.ipam.interface import keeps_state_in_database
from pipam.service.database import Database, UnitOfWork
from pipam.service.policy import ADMIN
from pipam.service.resources import discover
from tests.conftest import new_schema
from tests.helpers import net, subnet
from tests.server import Server

PORTS = next(m for m in discover() if m.DEFINITION.singular == "port")


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[tuple[Database, str, str]]:
    """A SQLite database with one network and a /24, its file, and the network's id."""
    url = new_schema("sqlite", str(tmp_path), "now")
    db = Database(load_settings(database_url=url))
    network = net(db)["id"]
    subnet(db, network, "10.9.0.0/24")
    yield db, url.removeprefix("sqlite:///"), network
    db.dispose()


def create_port(network: str) -> Any:
    return lambda u: PORTS.create(u, PORTS.DEFINITION.create_request({"network_id": network}), ADMIN).id


def counts(db: Database) -> tuple[int, int]:
    """Ports, and gate touches (every address change writes one)."""
    with db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(Port)), s.scalar(select(func.sum(IpamGate.touches)))


@pytest.fixture
def held_write_lock(sqlite_db) -> Iterator[sqlite3.Connection]:
    """Another process's transaction holding SQLite's write lock (a second connection does the same)."""
    _, path, _ = sqlite_db
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield other
    other.execute("ROLLBACK")
    other.close()


def test_a_change_runs_at_once_when_nothing_holds_the_lock(sqlite_db):
    db, _, network = sqlite_db
    before = counts(db)
    port_id = db.run_now(create_port(network))
    with db.session(write=False) as s:
        assert s.get(Port, port_id) is not None
    assert counts(db)[0] == before[0] + 1


def test_another_process_holding_the_lock_is_refused_at_once(sqlite_db, held_write_lock):
    db, _, network = sqlite_db
    before = counts(db)
    started = time.monotonic()
    with pytest.raises(NotNow) as refused:
        db.run_now(create_port(network))
    assert not isinstance(refused.value, HeldInProcess)  # waiting for it is the pool's, not the loop's
    # Refused, not after SQLite's busy timeout of 60 s.
    assert time.monotonic() - started < 10
    assert counts(db) == before


def test_a_refused_attempt_leaves_the_connection_waiting_again(sqlite_db, held_write_lock):
    """The pool's connection gets its busy timeout back: a change in a thread waits for the lock as before."""
    db, _, network = sqlite_db
    with pytest.raises(NotNow):
        db.run_now(create_port(network))
    # The lock is released while run() waits; with the busy timeout left at 0 it would fail at once.
    unlock = threading.Thread(target=lambda: (time.sleep(0.5), held_write_lock.execute("ROLLBACK")))
    unlock.start()
    try:
        assert db.run(create_port(network))
    finally:
        unlock.join()
        held_write_lock.execute("BEGIN")  # for the fixture's ROLLBACK


def test_a_thread_of_this_process_holding_the_lock_is_refused(sqlite_db):
    db, _, network = sqlite_db
    inside, release = threading.Event(), threading.Event()

    def slow_change(u: UnitOfWork) -> None:
        PORTS.create(u, PORTS.DEFINITION.create_request({"network_id": network}), ADMIN)
        inside.set()
        release.wait(30)

    worker = threading.Thread(target=db.run, args=(slow_change,))
    worker.start()
    try:
        assert inside.wait(30)
        before = counts(db)
        with pytest.raises(HeldInProcess):  # the loop may wait for it: it is this process's own change
            db.run_now(create_port(network))
        assert counts(db) == before
    finally:
        release.set()
        worker.join()
    db.run_now(create_port(network))  # and once it is done, at once again


class OutsideDriver(InternalDriver):
    """The internal driver as if it kept its state elsewhere: no ``in_database``."""

    in_database = False


def test_a_backend_outside_the_database_is_refused_before_it_is_called(sqlite_db, monkeypatch):
    db, _, network = sqlite_db
    backend = db.backend
    monkeypatch.setattr(db, "backend", lambda name: (OutsideDriver, backend(name)[1]))
    called: list[str] = []

    def get_subnet(self: InternalDriver, subnet_id: str) -> Any:
        called.append(subnet_id)
        return InternalDriver.get_subnet(self, subnet_id)

    monkeypatch.setattr(OutsideDriver, "get_subnet", get_subnet)
    before = counts(db)
    with pytest.raises(NotNow):
        db.run_now(create_port(network))
    assert counts(db) == before and not called  # the gate's touch rolled back, the driver never asked
    assert db.run(create_port(network))  # in a thread it runs as ever
    assert called


def test_which_drivers_say_they_are_in_the_database():
    from pipam.ipam.builtin.driver import BuiltinDriver
    from pipam.ipam.drivers.nautobot.driver import NautobotDriver

    assert keeps_state_in_database(BuiltinDriver) and keeps_state_in_database(InternalDriver)
    assert not keeps_state_in_database(NautobotDriver)
    assert not keeps_state_in_database(type("ThirdParty", (), {}))  # no attribute: not in the database
    assert not keeps_state_in_database(type("Truthy", (), {"in_database": "yes"}))


def test_now_is_only_for_sqlite_writes(sqlite_db):
    db, _, _ = sqlite_db
    with pytest.raises(ValueError):
        db.runner.run(lambda tx: None, write=False, now=True)


def test_a_server_answers_while_a_create_waits_for_another_process(tmp_path):
    """The create that cannot run at once waits in a thread: the same worker keeps answering meanwhile."""
    url = new_schema("sqlite", str(tmp_path), "serve")
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    server = None
    try:
        server = Server(url, "internal", tmp_path / "serve.log", workers="1")
        with httpx.Client(base_url=server.base, timeout=10) as client:
            network = client.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]["id"]
            body = {"subnet": {"network_id": network, "cidr": "10.9.0.0/24", "ip_version": 4}}
            assert client.post("/v2.0/subnets", json=body).status_code == 201
            assert client.post("/v2.0/ports", json={"port": {"network_id": network}}).status_code == 201  # at once
            other.execute("BEGIN IMMEDIATE")
            answers: list[httpx.Response] = []
            create = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(f"{server.base}/v2.0/ports", json={"port": {"network_id": network}}, timeout=60)
                )
            )
            create.start()
            time.sleep(0.5)  # the create has met the lock by now
            # Answered while the create waits: a create blocking the event loop would hold this one until
            # the lock is released below, after this request's 10 s timeout.
            assert client.get(f"/v2.0/networks/{network}").status_code == 200
            assert len(client.get("/v2.0/ports").json()["ports"]) == 1
            assert create.is_alive() and not answers
            other.execute("ROLLBACK")
            create.join(60)
            assert [a.status_code for a in answers] == [201]
            assert len(client.get("/v2.0/ports").json()["ports"]) == 2
    finally:
        other.close()  # releases the lock if an assertion failed while it was held
        if server is not None:
            server.stop()


def app_counting_hops(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[Any, list[object]]:
    """The app ``pipam serve`` builds on a new SQLite database, and the list of its hand-overs to the
    thread pool (each change's, and the bulk create's own)."""
    url = new_schema("sqlite", str(tmp_path), name)
    monkeypatch.setenv("PIPAM_DATABASE_URL", url)
    monkeypatch.setenv("PIPAM_IPAM_DRIVER", "internal")
    app = create_app_from_env()
    hops: list[object] = []
    real = context.run_in_threadpool

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(context, "run_in_threadpool", counted)
    monkeypatch.setattr(resources, "run_in_threadpool", counted)
    return app, hops


def drive(app: Any, requests: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run ``requests`` against ``app`` through httpx's ASGI transport on one event loop; then close its database."""

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pipam", timeout=30) as client:
            await requests(client)

    try:
        asyncio.run(main())
    finally:
        app.state.database.dispose()


def test_tag_changes_and_member_actions_run_on_the_event_loop_unless_they_would_wait(tmp_path, monkeypatch):
    """Every change of one resource takes the same path as a create: on the loop when it can run at once,
    in a thread when SQLite's lock is held, with the same answer either way."""
    app, hops = app_counting_hops(tmp_path, monkeypatch, "tags")
    path = app.state.database.settings.database_url.removeprefix("sqlite:///")

    async def requests(client: httpx.AsyncClient) -> None:
        network = (await client.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]["id"]
        tags = f"/v2.0/networks/{network}/tags"
        assert (await client.put(tags, json={"tags": ["a", "b"]})).status_code == 200
        assert (await client.post(tags, json={"tags": ["d"]})).status_code == 200
        assert (await client.put(f"{tags}/c")).status_code == 201
        assert (await client.delete(f"{tags}/a")).status_code == 204
        assert (await client.get(tags)).json() == {"tags": ["b", "c", "d"]}
        body = {"subnetpool": {"name": "p", "prefixes": ["10.1.0.0/16"], "default_prefixlen": 24}}
        pool = (await client.post("/v2.0/subnetpools", json=body)).json()["subnetpool"]["id"]
        added = await client.put(f"/v2.0/subnetpools/{pool}/add_prefixes", json={"prefixes": ["10.2.0.0/16"]})
        assert added.status_code == 200 and "10.2.0.0/16" in added.json()["prefixes"]
        assert hops == []  # all of them ran on the loop
        # With another process holding the lock, the same change is handed to a thread and waits there.
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")
            waiting = asyncio.ensure_future(client.delete(tags))
            await asyncio.sleep(0.5)
            assert not waiting.done() and len(hops) == 1
            other.execute("ROLLBACK")
            assert (await waiting).status_code == 204
        finally:
            other.close()
        assert (await client.get(tags)).json() == {"tags": []}

    drive(app, requests)


def test_a_change_that_meets_another_of_this_process_waits_for_it_on_the_loop(tmp_path, monkeypatch):
    """Another change of this process holds the write lock (here a slow one in a thread): the create waits
    for it on the event loop, which keeps answering meanwhile, and then runs there, not in the pool."""
    app, hops = app_counting_hops(tmp_path, monkeypatch, "queue")
    db: Database = app.state.database
    inside, release = threading.Event(), threading.Event()

    def slow_change(u: UnitOfWork) -> None:
        inside.set()
        release.wait(30)

    async def requests(client: httpx.AsyncClient) -> None:
        network = (await client.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]["id"]
        body = {"subnet": {"network_id": network, "cidr": "10.9.0.0/24", "ip_version": 4}}
        assert (await client.post("/v2.0/subnets", json=body)).status_code == 201
        holder = threading.Thread(target=db.run, args=(slow_change,))
        holder.start()
        try:
            assert inside.wait(30)
            waiting = asyncio.ensure_future(client.post("/v2.0/ports", json={"port": {"network_id": network}}))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            assert (await client.get(f"/v2.0/networks/{network}")).status_code == 200  # the loop answers
            release.set()
            created = await asyncio.wait_for(waiting, 30)
        finally:
            release.set()
            holder.join()
        assert created.status_code == 201
        assert created.json()["port"]["fixed_ips"][0]["ip_address"].startswith("10.9.0.")
        assert hops == []  # it ran on the loop once the lock was free

    drive(app, requests)
