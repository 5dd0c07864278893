"""A driver from another installed package: entry-point discovery, rollback hooks, shared-IPAM conflicts."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from pipam.cli.main import app
from pipam.config import load_settings
from pipam.errors import PipamError
from pipam.ipam.registry import available_drivers
from pipam.service.database import Database
from tests import dataset
from tests.conftest import reset
from tests.helpers import net, port, records_of, subnet
from tests.server import Server

runner = CliRunner()


@pytest.fixture
def ext_store(tmp_path, monkeypatch):
    path = tmp_path / "external-ipam.db"
    monkeypatch.setenv("PIPAM_EXTIPAM_DB", str(path))
    import pipam_extipam

    return pipam_extipam.store()


@pytest.fixture
def ext_db(db, schema_url, ext_store):
    reset(db, "extipam")
    database = Database(load_settings(database_url=schema_url, ipam_driver="extipam"))
    yield database
    database.dispose()


def cli(url: str, driver: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": driver})
    return result.exit_code, result.output


def test_driver_found_by_entry_point():
    assert {"builtin", "internal", "extipam"} <= set(available_drivers())


def test_failed_request_undoes_outside_allocations(ext_db, ext_store):
    n = net(ext_db)["id"]
    s = subnet(ext_db, n, "10.0.0.0/24")
    port(ext_db, n, fixed_ips=[{"ip_address": "10.0.0.9"}])
    with pytest.raises(PipamError) as info:
        port(ext_db, n, fixed_ips=[{"subnet_id": s["id"], "ip_address": "10.0.0.20"}, {"ip_address": "10.0.0.9"}])
    assert info.value.type == "IpAddressAlreadyAllocated"
    held = {r[0] for r in ext_store.execute("SELECT ip FROM allocs")}
    assert held == {"10.0.0.9"}  # 10.0.0.20 was handed back when the transaction rolled back
    with pytest.raises(PipamError):
        subnet(ext_db, n, "10.0.0.0/25")  # overlapping: refused before the driver is called
    assert ext_store.execute("SELECT count(*) FROM subnets").fetchone()[0] == 1


@pytest.mark.slow  # 7 to 12 s: two migrations into an outside store
def test_migration_into_shared_ipam_reports_conflicts_then_adopts(db, schema_url, backend, ext_store):
    made = dataset.build(db, 40)
    before = dataset.holdings(db)
    small = made["small"]["id"]
    in_core = {ip for pairs in before.values() for s, ip in pairs if s == small}
    core_ip = next(ip for ip in sorted(in_core) if ip != "192.168.7.1")
    # An address Pipam never allocated (chosen among the free ones: Pipam's choices are random).
    foreign = next(f"192.168.7.{i}" for i in range(254, 1, -1) if f"192.168.7.{i}" not in in_core)
    # Another system uses the same subnet in the shared IPAM and already holds one address Pipam
    # allocated, and one Pipam did not.
    ext_store.execute(
        "INSERT INTO subnets VALUES (?, '192.168.7.0/24', ?)", (small, json.dumps([["192.168.7.2", "192.168.7.254"]]))
    )
    ext_store.execute("INSERT INTO allocs VALUES (?, ?, 'other')", (small, core_ip))
    ext_store.execute("INSERT INTO allocs VALUES (?, ?, 'other')", (small, foreign))

    code, out = cli(schema_url, backend, "ipam", "migrate", "--to", "extipam", "--yes")
    assert code == 1 and "1 conflict" in out and core_ip in out
    code, status = cli(schema_url, backend, "ipam", "status", "--json")
    assert json.loads(status)["fence"] is None and json.loads(status)["active_backend"] == backend

    code, out = cli(
        schema_url, backend, "ipam", "migrate", "--to", "extipam", "--yes", "--on-conflict", "adopt", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["outcome"] == "completed", out
    assert report["verification"]["backend"]["foreign_allocations"] == 1
    code, out = cli(schema_url, "extipam", "ipam", "verify")
    assert code == 0, out

    ext = Database(load_settings(database_url=schema_url, ipam_driver="extipam"))
    got = set()
    while True:
        try:
            got.add(port(ext, made["b"]["id"])["fixed_ips"][0]["ip_address"])
        except PipamError as exc:
            assert exc.type == "IpAddressGenerationFailure"
            break
    assert foreign not in got and core_ip not in got
    ext.dispose()
    code, out = cli(schema_url, "extipam", "ipam", "cleanup", backend, "--yes")
    assert code == 0, out
    code, out = cli(schema_url, "extipam", "ipam", "migrate", "--to", backend, "--yes")
    assert code == 0, out
    code, out = cli(schema_url, backend, "ipam", "cleanup", "extipam", "--yes")
    assert code == 1 and "shared" in out


def test_server_runs_with_third_party_driver(ext_db, schema_url, tmp_path, ext_store):
    srv = Server(schema_url, "extipam", tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=srv.base) as api:
            n = api.post("/v2.0/networks", json={"network": {"name": "x"}}).json()["network"]
            r = api.post(
                "/v2.0/subnets", json={"subnet": {"network_id": n["id"], "ip_version": 4, "cidr": "10.7.0.0/29"}}
            )
            assert r.status_code == 201, r.text
            ips = {
                api.post("/v2.0/ports", json={"port": {"network_id": n["id"]}}).json()["port"]["fixed_ips"][0][
                    "ip_address"
                ]
                for _ in range(5)
            }
            assert len(ips) == 5
            r = api.post("/v2.0/ports", json={"port": {"network_id": n["id"]}})
            assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "IpAddressGenerationFailure"
    finally:
        srv.stop()
    assert {r[0] for r in ext_store.execute("SELECT ip FROM allocs")} == ips


def test_verify_probes_the_free_space_of_an_outside_ipam(ext_db, schema_url, ext_store):
    n = net(ext_db)["id"]
    s = subnet(ext_db, n, "10.0.0.0/24")["id"]
    port(ext_db, n, fixed_ips=[{"ip_address": "10.0.0.2"}])
    code, out = cli(schema_url, "extipam", "ipam", "verify", "--json")
    result = json.loads(out)
    assert code == 0 and result["free_space"]["check"] == "probe" and result["free_space"]["subnets_checked"] == 1
    # The outside IPAM loses Pipam's record of 10.0.0.2: the next address it would hand out is one a port holds.
    ext_store.execute("DELETE FROM allocs WHERE ip = '10.0.0.2'")
    code, out = cli(schema_url, "extipam", "ipam", "verify", "--json")
    result = json.loads(out)
    assert code == 1
    offered = [d for d in result["differences"] if d["kind"] == "free_space_allocated"]
    assert offered == [
        {
            "subnet_id": s,
            "kind": "free_space_allocated",
            "detail": offered[0]["detail"],
            "range": {"first": "10.0.0.2", "last": "10.0.0.2"},
        }
    ]
    code, out = cli(schema_url, "extipam", "ipam", "repair", "--backend", "extipam", "--yes")
    assert code == 1 and "probes an outside IPAM" in out


def test_a_driver_without_its_optional_dependencies_is_skipped_quietly(monkeypatch):
    """A plain install has the Nautobot driver's entry point but not httpx: listing the drivers' schemas
    (every ``pipam db`` command and every start) says nothing above DEBUG about it, while a driver that
    fails to load for any other reason is still a warning."""
    from pipam.errors import IpamDriverNotFound
    from pipam.ipam import registry

    def load(name: str):  # type: ignore[no-untyped-def]
        causes = {"needs_extra": ModuleNotFoundError("No module named 'httpx'"), "broken": RuntimeError("bug")}
        try:
            raise causes[name]
        except Exception as exc:
            raise IpamDriverNotFound(f"IPAM driver {name!r} failed to load: {exc}") from exc

    monkeypatch.setattr(registry, "available_drivers", lambda: ["broken", "needs_extra"])
    monkeypatch.setattr(registry, "load_driver", load)
    with records_of("pipam.ipam") as records:
        assert registry.schema_locations() == []
    levels = {r.getMessage().split("'")[1]: r.levelname for r in records}
    assert levels == {"broken": "WARNING", "needs_extra": "DEBUG"}


def test_a_driver_missing_its_dependency_names_the_extra_that_installs_it(monkeypatch):
    """Configured without httpx, the Nautobot driver's error says which extra of Pipam installs it; a
    module no extra provides gets no such advice."""
    from importlib.metadata import EntryPoint, distribution

    from pipam.errors import IpamDriverNotFound
    from pipam.ipam import registry

    class Missing(EntryPoint):
        def load(self):  # type: ignore[no-untyped-def]
            module = "httpx" if self.name == "nautobot" else "not_a_dependency"
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    points = [Missing(n, "x:y", registry.GROUP)._for(distribution("pipam")) for n in ("nautobot", "other")]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    registry.load_driver.cache_clear()
    try:
        messages = {}
        for name in ("nautobot", "other"):
            with pytest.raises(IpamDriverNotFound) as caught:
                registry.load_driver(name)
            messages[name] = caught.value.message
    finally:
        registry.load_driver.cache_clear()
    assert messages == {
        "nautobot": "IPAM driver 'nautobot' failed to load: No module named 'httpx';"
        " install it with: pip install 'pipam[nautobot]'",
        "other": "IPAM driver 'other' failed to load: No module named 'not_a_dependency'",
    }
