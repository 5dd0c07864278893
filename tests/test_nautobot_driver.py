"""The Nautobot driver against a real Nautobot: migration into it and back with others' addresses already
there, cleanup, concurrent allocation with others allocating in Nautobot directly, and an outage."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pipam.cli.main import app
from pipam.config import load_settings
from pipam.errors import PipamError
from pipam.ipam.drivers.nautobot.client import Conflict, NautobotClient
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing import local
from tests import dataset
from tests.databases import fresh_url
from tests.helpers import net, subnet
from tests.nautobot_server import NautobotServer
from tests.server import Server

pytestmark = [pytest.mark.nautobot, pytest.mark.slow, pytest.mark.xdist_group("nautobot")]

runner = CliRunner()
TAG = "pipam"


def cli(url: str, driver: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": driver})
    return result.exit_code, result.output


@pytest.fixture
def nb(nautobot_server: NautobotServer, nautobot_namespace: dict[str, str]) -> Iterator[tuple[NautobotClient, dict]]:
    """A client of the session's Nautobot and the ids of this test's namespace and of the Active status."""
    with NautobotClient(nautobot_server.url, nautobot_server.token, timeout=60) as client:
        ids = {"namespace": client.namespace(nautobot_namespace["namespace"])["id"], "status": client.status_id()}
        yield client, ids


def ips_by_host(client: NautobotClient, namespace_id: str) -> dict[str, dict]:
    return {ip["host"]: ip for ip in client.ips(namespace_id)}


@contextlib.contextmanager
def calls_to_nautobot(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """The (method, path) of each call Pipam's Nautobot clients send meanwhile."""
    sent: list[tuple[str, str]] = []
    request = NautobotClient.request

    def counted(self: NautobotClient, method: str, path: str, **kwargs: object) -> httpx.Response:
        sent.append((method, path))
        return request(self, method, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NautobotClient, "request", counted)
    try:
        yield sent
    finally:
        monkeypatch.setattr(NautobotClient, "request", request)


def tagged(obj: dict) -> bool:
    return any(t.get("name", TAG) == TAG for t in obj["tags"])


def test_migration_to_nautobot_and_back_with_foreign_addresses(tmp_path: Path, nb, monkeypatch) -> None:
    client, ids = nb
    monkeypatch.setenv("PIPAM_DRIVERS__NAUTOBOT__ADOPT_PREFIXES", "true")
    url = f"sqlite:///{tmp_path}/pipam.db"
    db = Database(load_settings(database_url=url, ipam_driver="internal"))
    upgrade_database(db.engine, "internal")
    made = dataset.build(db, 60)
    before = dataset.holdings(db)
    small = made["small"]["id"]
    in_core = {ip for pairs in before.values() for s, ip in pairs if s == small}
    core_ip = next(ip for ip in sorted(in_core) if ip != "192.168.7.1")
    foreign = next(f"192.168.7.{i}" for i in range(254, 1, -1) if f"192.168.7.{i}" not in in_core)
    # Another system already uses 192.168.7.0/24 in Nautobot: it holds an address Pipam allocated too
    # (a conflict) and one Pipam did not.
    prefix = client.create_prefix("192.168.7.0/24", ids["namespace"], ids["status"], description="theirs")
    for ip in (core_ip, foreign):
        client.create_ip(f"{ip}/24", ids["namespace"], ids["status"], description="theirs")

    code, out = cli(url, "internal", "ipam", "migrate", "--to", "nautobot", "--yes")
    assert code == 1 and "1 conflict" in out and core_ip in out, out
    assert {ip["host"] for ip in client.ips(ids["namespace"])} == {core_ip, foreign}  # nothing copied

    code, out = cli(url, "internal", "ipam", "migrate", "--to", "nautobot", "--yes", "--on-conflict", "adopt", "--json")
    report = json.loads(out)
    assert code == 0 and report["outcome"] == "completed", out
    assert report["verification"]["backend"]["foreign_allocations"] == 1
    code, out = cli(url, "nautobot", "ipam", "verify", "--backend", "nautobot", "--json")
    assert code == 0, out
    verified = json.loads(out)
    assert verified["clean"] and verified["backend"]["foreign_allocations"] == 1, out

    # Every core address is an ip-address in Nautobot carrying its port; the conflicting one was adopted
    # (its port recorded, not tagged as Pipam's), the foreign one left alone.
    held = ips_by_host(client, ids["namespace"])
    for port_id, pairs in before.items():
        for _, ip in pairs:
            assert held[ip]["custom_fields"]["pipam_port_id"] == port_id, ip
    assert not tagged(held[core_ip]) and held[foreign]["custom_fields"]["pipam_port_id"] is None
    assert all(tagged(ip) for host, ip in held.items() if host not in (core_ip, foreign))
    assert dataset.holdings(db) == before

    # What an undo could not reach (Nautobot was down when a request failed) is Pipam's, not foreign:
    # verify lists it.
    stray_host = next(f"192.168.7.{i}" for i in range(2, 255) if f"192.168.7.{i}" not in held)
    stray = client.create_ip(f"{stray_host}/24", ids["namespace"], ids["status"], tags=[client.ensure_tag(TAG)])
    code, out = cli(url, "nautobot", "ipam", "verify")
    assert code == 1 and stray_host in out, out
    client.delete_ip(stray["id"])

    # Allocating through Nautobot never hands out the other system's address.
    nbdb = Database(load_settings(database_url=url, ipam_driver="nautobot"))
    new = [nbdb.run(lambda u: local.create(u, "port", {"network_id": made["b"]["id"]})) for _ in range(5)]
    got = {p["fixed_ips"][0]["ip_address"] for p in new}
    assert foreign not in got and len(got) == 5
    nbdb.dispose()
    after = dataset.holdings(db)

    code, out = cli(url, "nautobot", "ipam", "migrate", "--to", "internal", "--yes")
    assert code == 0, out
    assert dataset.holdings(db) == after
    code, out = cli(url, "internal", "ipam", "verify")
    assert code == 0, out

    code, out = cli(url, "internal", "ipam", "cleanup", "nautobot", "--yes")
    assert code == 0, out
    # Only what Pipam made is gone: the other system's prefix and addresses stay, unmarked.
    left = ips_by_host(client, ids["namespace"])
    assert set(left) == {core_ip, foreign}
    assert all(ip["custom_fields"]["pipam_port_id"] is None for ip in left.values())
    prefixes = list(client.prefixes(ids["namespace"]))
    assert [p["id"] for p in prefixes] == [prefix["id"]]
    assert prefixes[0]["custom_fields"]["pipam_subnet_id"] is None
    db.dispose()


WORKERS = 8
ALLOCATIONS = 50
KEEP = 15  # ports a worker keeps at most (deleting one at random beyond): 8 x 15 + others' < a /24


def _allocating_worker(url: str, network_id: str, seed: int, queue) -> None:  # type: ignore[no-untyped-def]
    db = Database(load_settings(database_url=url, ipam_driver="nautobot"))
    rnd = random.Random(seed)
    handed: list[str] = []
    held: list[tuple[str, str]] = []
    errors: list[str] = []
    for _ in range(ALLOCATIONS):
        try:
            port = db.run(lambda u: local.create(u, "port", {"network_id": network_id}))
            handed.append(port["fixed_ips"][0]["ip_address"])
            held.append((port["id"], handed[-1]))
            if len(held) > KEEP:
                port_id, _ = held.pop(rnd.randrange(len(held)))
                db.run(lambda u, p=port_id: local.delete(u, "port", p))
        except PipamError as exc:
            errors.append(f"{exc.type}: {exc.message[:300]}")
    db.dispose()
    queue.put((handed, held, errors))


def _others_allocate(client: NautobotClient, ids: dict, stop: threading.Event, taken: list[str]) -> None:
    """Another system creating addresses directly in Nautobot at random while Pipam allocates."""
    rnd = random.Random(3)
    while not stop.is_set() and len(taken) < 40:
        host = f"10.77.0.{rnd.randrange(2, 255)}"
        try:
            client.create_ip(f"{host}/24", ids["namespace"], ids["status"], description="theirs")
            taken.append(host)
        except Conflict:
            pass  # Pipam (or this loop) has it
        time.sleep(0.05)


def test_concurrent_workers_never_fail_nor_collide_nor_take_others_addresses(tmp_path: Path, nb) -> None:
    client, ids = nb
    # PostgreSQL: on SQLite, Pipam's writers queue for the database's one write lock, so Nautobot would
    # never see two of them at once.
    url = fresh_url("postgresql", str(tmp_path), "nbconc")
    db = Database(load_settings(database_url=url, ipam_driver="nautobot"))
    upgrade_database(db.engine, "nautobot")
    network_id = net(db)["id"]
    subnet(db, network_id, "10.77.0.0/24")

    taken: list[str] = []
    stop = threading.Event()
    others = threading.Thread(target=_others_allocate, args=(client, ids, stop, taken))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allocating_worker, args=(url, network_id, i, queue)) for i in range(WORKERS)]
    others.start()
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=900) for _ in procs]
    finally:
        stop.set()
        others.join()
        for p in procs:
            p.join(timeout=60)
    errors = [e for _, _, errs in results for e in errs]
    assert errors == []
    assert sum(len(handed) for handed, _, _ in results) == WORKERS * ALLOCATIONS
    held = {ip: port_id for _, kept, _ in results for port_id, ip in kept}
    assert len(held) == sum(len(kept) for _, kept, _ in results)  # no address held twice
    assert taken and not set(taken) & set(held)  # none of the other system's addresses handed out
    # Nautobot holds exactly Pipam's ports' addresses, each with its port, and the other system's.
    in_nautobot = ips_by_host(client, ids["namespace"])
    assert {h for h, ip in in_nautobot.items() if tagged(ip)} == set(held)
    assert all(in_nautobot[ip]["custom_fields"]["pipam_port_id"] == port_id for ip, port_id in held.items())
    assert set(taken) <= set(in_nautobot)
    code, out = cli(url, "nautobot", "ipam", "verify")
    assert code == 0, out
    db.dispose()


def test_nautobot_outage_answers_503_then_recovers(tmp_path: Path, nb, nautobot_server: NautobotServer) -> None:
    client, ids = nb
    url = f"sqlite:///{tmp_path}/pipam.db"
    db = Database(load_settings(database_url=url, ipam_driver="nautobot"))
    upgrade_database(db.engine, "nautobot")
    network_id = net(db)["id"]
    subnet(db, network_id, "10.78.0.0/24")
    server = Server(url, "nautobot", tmp_path / "pipam.log", retry_after="3")
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def allocate() -> None:
        with httpx.Client(base_url=server.base, timeout=60) as http:
            while not stop.is_set():
                r = http.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                answers.append((time.monotonic(), r.status_code, r.headers.get("retry-after", "")))
                if r.status_code != 201:
                    time.sleep(0.2)

    threads = [threading.Thread(target=allocate) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        while sum(1 for _, s, _ in answers if s == 201) < 10:
            time.sleep(0.1)
        nautobot_server.stop()
        down = time.monotonic()
        while sum(1 for t, s, _ in answers if t > down and s == 503) < 5:
            time.sleep(0.1)
        nautobot_server.start()
        up = time.monotonic()
        while sum(1 for t, s, _ in answers if t > up and s == 201) < 10:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        nautobot_server.start()
    statuses = Counter(s for _, s, _ in answers)
    assert set(statuses) <= {201, 503}, statuses
    assert all(retry == "3" for _, s, retry in answers if s == 503)
    # Pipam's own data reads on while Nautobot is down (checked after: Nautobot is back, but reads never
    # asked it); and what the failed requests had done in Nautobot is undone once it is back.
    ports = httpx.get(f"{server.base}/v2.0/ports").json()["ports"]
    assert len(ports) == statuses[201]
    core = {p["fixed_ips"][0]["ip_address"] for p in ports}
    deadline = time.monotonic() + 60
    while {h for h, ip in ips_by_host(client, ids["namespace"]).items() if tagged(ip)} != core:
        assert time.monotonic() < deadline, "Nautobot still holds addresses of failed requests"
        time.sleep(1)
    server.stop()
    code, out = cli(url, "nautobot", "ipam", "verify")
    assert code == 0, out
    db.dispose()


def test_a_bulk_port_create_records_each_address_with_its_own_port(tmp_path: Path, nb, monkeypatch) -> None:
    client, ids = nb
    url = f"sqlite:///{tmp_path}/pipam.db"
    db = Database(load_settings(database_url=url, ipam_driver="nautobot"))
    upgrade_database(db.engine, "nautobot")
    network_id = net(db)["id"]
    subnet(db, network_id, "10.78.0.0/28")  # 13 pool addresses
    with calls_to_nautobot(monkeypatch) as sent:
        made = db.run(lambda u: local.create_many(u, "port", [{"network_id": network_id}] * 8))
    assert sent == [("POST", "ipam/ip-addresses/")]  # one bulk create for the 8 (one create each before)
    held = {p["fixed_ips"][0]["ip_address"]: p["id"] for p in made}
    assert len(held) == 8
    in_nautobot = ips_by_host(client, ids["namespace"])
    assert {host: in_nautobot[host]["custom_fields"]["pipam_port_id"] for host in held} == held
    # Bigger than what is free (5): the batch creates nothing, the ports one by one fail at the 6th, and
    # the request's undo leaves Nautobot as it was. One address after the other, the batch created each
    # address, found the subnet full, and deleted each again.
    with calls_to_nautobot(monkeypatch) as sent, pytest.raises(PipamError, match="No more IP addresses"):
        db.run(lambda u: local.create_many(u, "port", [{"network_id": network_id}] * 6))
    # At most: the batch's blind draw of 6 among 13 meets a held address (a 400), and a listing finds 5
    # free: 2 calls. Then each of 5 ports a blind create, or one that meets a held address, a listing and
    # a create: 15; the 6th port's blind create and listing: 2; and the undo's 5 deletes. One address
    # after the other, the batch alone made at least 17 (5 creates, the 6th's 2, and a lookup and a
    # delete for each of the 5): 50 calls in one run, against 22.
    assert len(sent) <= 2 + 5 * 3 + 2 + 5, sent
    code, out = cli(url, "nautobot", "ipam", "verify")
    assert code == 0, out
    db.dispose()


def test_a_bulk_larger_than_one_batch_records_each_address_with_its_own_port(tmp_path: Path, nb, monkeypatch) -> None:
    """60 ports on a /24: three bulk creates in Nautobot (25 a request), each address with its own port."""
    client, ids = nb
    db = Database(load_settings(database_url=f"sqlite:///{tmp_path}/pipam.db", ipam_driver="nautobot"))
    upgrade_database(db.engine, "nautobot")
    network_id = net(db)["id"]
    subnet(db, network_id, "10.79.0.0/24")
    with calls_to_nautobot(monkeypatch) as sent:
        made = db.run(lambda u: local.create_many(u, "port", [{"network_id": network_id}] * 60))
    assert sent.count(("POST", "ipam/ip-addresses/")) >= 3
    held = {p["fixed_ips"][0]["ip_address"]: p["id"] for p in made}
    assert len(held) == 60
    in_nautobot = ips_by_host(client, ids["namespace"])
    assert {host: ip["custom_fields"]["pipam_port_id"] for host, ip in in_nautobot.items()} == held
    db.dispose()
