"""The Nautobot driver against a real Nautobot: migration into it and back with others' addresses already
there, cleanup, concurrent allocation with others allocating in Nautobot directly, and an outage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipam.cli.main import app
from pipam.config import load_settings
from pipam.ipam.drivers.nautobot.client import NautobotClient
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing import local
from tests import dataset
from tests.nautobot_server import NautobotServer

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
