"""Migration between backends, both ways, on every database: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import delete, insert, select
from typer.testing import CliRunner

from pipam.cli.main import app
from pipam.config import load_settings
from pipam.db.models import (
    AddressScope,
    IPAllocation,
    IpamMigration,
    IpamState,
    Network,
    SubnetPool,
    SubnetPoolFreeBlock,
)
from pipam.errors import PipamError
from pipam.ipam import state
from pipam.ipam.drivers.internal.models import IpamAllocation, IpamSubnet
from pipam.migration.runner import Migrator, Options
from pipam.service.database import Database
from pipam.testing import local
from tests import dataset
from tests.held_change import HeldChange, wait_until_blocked
from tests.helpers import error_of, net, port, stop_at, subnet

runner = CliRunner()
OTHER = {"builtin": "internal", "internal": "builtin"}


def cli(url: str, driver: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": driver})
    return result.exit_code, result.output


def cli_json(url: str, driver: str, *args: str) -> tuple[int, dict]:
    code, out = cli(url, driver, *args, "--json")
    return code, json.loads(out)


def as_driver(url: str, driver: str) -> Database:
    return Database(load_settings(database_url=url, ipam_driver=driver))


def fill_until_exhausted(db: Database, network_id: str) -> list[str]:
    got = []
    while True:
        try:
            got.append(
                db.run(lambda u: local.create(u, "port", {"network_id": network_id}))["fixed_ips"][0]["ip_address"]
            )
        except PipamError as exc:
            assert exc.type == "IpAddressGenerationFailure", exc.message
            return got


@pytest.mark.slow  # 35 to 70 s: a whole migration there and back, checked address by address
def test_migrate_both_ways_keeps_every_address(db, schema_url, backend):
    made = dataset.build(db, 3000)
    before = dataset.holdings(db)
    assert len(before) > 2000 and sum(len(v) for v in before.values()) > 6000  # thousands of ports
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out
    target = OTHER[backend]

    code, report = cli_json(schema_url, backend, "ipam", "migrate", "--to", target, "--yes", "--batch-size", "2")
    assert code == 0 and report["outcome"] == "completed", report
    assert report["verification"]["clean"]
    assert report["verification"]["core"]["allocations"] == sum(len(v) for v in before.values())

    # Servers follow the database: one still configured for the old backend allocates through the new
    # one without a restart, and nothing collides.
    new = as_driver(schema_url, target)
    assert dataset.holdings(new) == before
    assert db.run(lambda u: type(u.addresses.driver).name) == target
    taken = {ip for pairs in before.values() for _, ip in pairs}
    fresh = fill_until_exhausted(new, made["b"]["id"])
    assert not set(fresh) & taken and len(fresh) == len(set(fresh))
    held_small = sum(1 for pairs in before.values() for s, _ in pairs if s == made["small"]["id"])
    assert len(fresh) + held_small == 253 + 1  # the pool, plus the router's gateway address outside it
    v6 = [new.run(lambda u: local.create(u, "port", {"network_id": made["a"]["id"]})) for _ in range(20)]
    assert all(len(p["fixed_ips"]) == 3 for p in v6)
    code, out = cli(schema_url, target, "ipam", "verify")
    assert code == 0, out

    # Revert: the same command the other way; the stale data of the first backend is replaced.
    after_forward = dataset.holdings(new)
    code, report = cli_json(schema_url, target, "ipam", "migrate", "--to", backend, "--yes")
    assert code == 0 and report["outcome"] == "completed", report
    assert dataset.holdings(db) == after_forward
    all_ips = Counter(ip for pairs in after_forward.values() for _, ip in pairs)
    more = fill_until_exhausted(db, made["b"]["id"])
    assert more == [] and max(all_ips.values()) == 1
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out

    # Cleanup of the now stale target, refused for the active one, then a re-migration works.
    code, out = cli(schema_url, backend, "ipam", "cleanup", backend, "--yes")
    assert code == 1 and "active backend" in out
    code, out = cli(schema_url, backend, "ipam", "cleanup", target, "--yes")
    assert code == 0, out
    code, status = cli_json(schema_url, backend, "ipam", "status")
    assert not any(v for v in status["stale_data"][target].values())
    code, report = cli_json(schema_url, backend, "ipam", "migrate", "--to", target, "--yes")
    assert code == 0 and report["verification"]["clean"]
    new.dispose()


def test_dry_run_writes_nothing(db, schema_url, backend):
    dataset.build(db, 50)
    code, report = cli_json(schema_url, backend, "ipam", "migrate", "--to", OTHER[backend], "--dry-run")
    assert code == 0 and report["outcome"] == "dry-run" and report["counts"]["allocations"] > 50
    with db.session() as session:
        assert session.scalar(select(IpamState.active_backend)) == backend
        assert session.scalar(select(IpamMigration.id)) is None
    port(db, net(db)["id"])  # still allocating through the old backend


def test_migrate_to_active_backend_is_a_no_op_and_unknown_driver_fails(db, schema_url, backend):
    code, report = cli_json(schema_url, backend, "ipam", "migrate", "--to", backend, "--yes")
    assert code == 0 and report["outcome"] == "nothing-to-do"
    code, out = cli(schema_url, backend, "ipam", "migrate", "--to", "nosuch", "--yes")
    assert code == 1 and "not installed" in out
    code, out = cli(schema_url, backend, "ipam", "migrate", "--to", OTHER[backend])
    assert code == 2 and "--yes" in out


def test_preflight_refuses_inconsistent_core(db, schema_url, backend):
    n = net(db)["id"]
    s = subnet(db, n, "10.0.0.0/24")
    p = port(db, n)
    with db.engine.begin() as conn:
        conn.execute(
            insert(IPAllocation).values(
                ip_address="10.9.9.9", ip_key=f"{0x0A090909:032x}", subnet_id=s["id"], port_id=p["id"], network_id=n
            )
        )
    code, out = cli(schema_url, backend, "ipam", "migrate", "--to", OTHER[backend], "--yes")
    assert code == 1 and "10.9.9.9 is outside the subnet" in out
    with db.session() as session:
        assert session.scalar(select(IpamState.fence_migration_id)) is None


def test_fence_refuses_writes_but_not_reads(db, schema_url, backend):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/24")
    db.run(lambda u: state.raise_fence(u.session, "m-1", "migrating"))
    err = error_of(lambda: port(db, n))
    assert (err.status, err.type) == (503, "IpamMigrationInProgress")
    assert port(db, n, fixed_ips=[])["fixed_ips"] == []  # no address change: allowed
    assert net(db)["name"] == "net"


def test_fence_waits_for_a_change_in_flight(db, schema_url, backend):
    """A port create that entered the gate (it writes a gate slot; on MariaDB an UPDATE, then a SELECT of
    the row it now holds, as MariaDB has no UPDATE ... RETURNING) and is still open: the fence's write of
    every slot waits for it, the create commits through the old state, the next one meets the fence.
    On Galera the same writes meet in certification instead: tests/test_galera.py."""
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/24")
    other = Database(load_settings(database_url=schema_url, ipam_driver=backend))
    fence = threading.Thread(target=lambda: db.run(lambda u: state.raise_fence(u.session, "m-1", "migrating")))
    change = HeldChange(other, n)
    try:
        fence.start()
        wait_until_blocked(schema_url, fence)
        assert change.commit(60) and change.committed, change.error
        fence.join(60)
        assert not fence.is_alive()
    finally:
        change.close()
        other.dispose()
    assert change.port is not None
    with db.session() as session:
        assert session.scalar(select(IPAllocation.port_id).where(IPAllocation.network_id == n)) == change.port["id"]
    err = error_of(lambda: port(db, n))
    assert (err.status, err.type) == (503, "IpamMigrationInProgress")
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out


def test_verify_lists_every_difference(db, schema_url, backend):
    made = dataset.build(db, 60)
    target = OTHER[backend]
    code, _ = cli(schema_url, backend, "ipam", "migrate", "--to", target, "--yes")
    assert code == 0
    new = as_driver(schema_url, target)
    some = new.run(lambda u: local.create(u, "port", {"network_id": made["b"]["id"]}))
    lost_ip = some["fixed_ips"][0]["ip_address"]
    # Corrupt the active backend: forget one allocation, invent a stale subnet.
    if target == "internal":
        with db.engine.begin() as conn:
            conn.execute(delete(IpamAllocation).where(IpamAllocation.ip_address == lost_ip))
            conn.execute(insert(IpamSubnet).values(id="x" * 36, subnet_id="y" * 36, cidr="10.99.0.0/24", ip_version=4))
        kinds = {"missing_allocations", "extra_subnet"}
    else:
        with db.engine.begin() as conn:
            conn.execute(delete(IPAllocation).where(IPAllocation.ip_address == lost_ip))
        # builtin's free ranges still leave the address out: neither allocated in the core nor free.
        kinds = {"extra_allocations", "free_space_missing"}
    code, result = cli_json(schema_url, target, "ipam", "verify")
    assert code == 1 and not result["clean"]
    assert {d["kind"] for d in result["differences"]} == kinds
    assert any(lost_ip in d["detail"] for d in result["differences"])
    # The old backend is stale: verify of it shows a port created since the switch.
    later = new.run(lambda u: local.create(u, "port", {"network_id": made["b"]["id"]}))["fixed_ips"][0]["ip_address"]
    code, old = cli_json(schema_url, target, "ipam", "verify", "--backend", backend)
    assert code == 1
    assert any(d["kind"] == "missing_allocations" and later in d["detail"] for d in old["differences"])
    new.dispose()


def test_interrupt_lifts_the_fence_and_abort_keeps_the_old_backend(db, schema_url, backend):
    dataset.build(db, 30)
    migrator = Migrator(db.engine, db.settings, stop_at("after-fence"))
    with pytest.raises(KeyboardInterrupt):
        migrator.run(Options(target=OTHER[backend]))
    db.run(lambda u: u.addresses.driver)  # the fence came down with the interrupted run
    code, status = cli_json(schema_url, backend, "ipam", "status")
    assert status["fence"] is None and status["last_migration"]["status"] == "interrupted"
    assert status["migrating_to"] == OTHER[backend]
    code, out = cli(schema_url, backend, "ipam", "migrate", "--to", backend, "--yes")
    assert code == 1 and "in progress" in out
    code, out = cli(schema_url, backend, "ipam", "migrate", "--to", "nosuch", "--abort")
    assert code == 1 and "not to 'nosuch'" in out
    code, report = cli_json(schema_url, backend, "ipam", "migrate", "--to", OTHER[backend], "--abort")
    assert code == 0 and report["outcome"] == "aborted"
    assert db.run(lambda u: type(u.addresses.driver).name) == backend
    code, status = cli_json(schema_url, backend, "ipam", "status")
    assert status["fence"] is None and status["active_backend"] == backend and status["migrating_to"] is None


def scoped_state(db: Database) -> dict[str, object]:
    """What the migration must leave alone: address scopes, pools (defaults, scopes, prefixes, free
    space) and the networks' external flags and MTUs; it is core data, not backend state."""
    with db.session(write=False) as session:
        scopes = sorted(tuple(r) for r in session.execute(select(AddressScope.id, AddressScope.ip_version)))
        pools = sorted(
            (p.id, p.is_default, p.default_ip_version, p.address_scope_id, tuple(x.cidr for x in p.prefixes))
            for p in session.scalars(select(SubnetPool))
        )
        free = sorted(
            tuple(r)
            for r in session.execute(
                select(SubnetPoolFreeBlock.subnetpool_id, SubnetPoolFreeBlock.first_key, SubnetPoolFreeBlock.last_key)
            )
        )
        nets = sorted(tuple(r) for r in session.execute(select(Network.id, Network.router_external, Network.mtu)))
    return {"scopes": scopes, "pools": pools, "free": free, "networks": nets}


def test_migration_carries_address_scopes_and_default_pools(db, schema_url, backend):
    made = dataset.build_scoped(db)
    before, state = dataset.holdings(db), scoped_state(db)
    # An IPv4 and an EUI-64 address for 90 ports, an IPv4 one from the second pool for 30, the external port.
    assert sum(len(v) for v in before.values()) == 90 * 2 + 30 + 1
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out
    target = OTHER[backend]
    code, report = cli_json(schema_url, backend, "ipam", "migrate", "--to", target, "--yes", "--batch-size", "2")
    assert code == 0 and report["outcome"] == "completed" and report["verification"]["clean"], report
    new = as_driver(schema_url, target)
    assert dataset.holdings(new) == before and scoped_state(new) == state
    # The default pools keep serving, through the new backend, from where they were.
    body = {"network_id": made["net"]["id"], "ip_version": 4, "use_default_subnetpool": True}
    more = new.run(lambda u: local.create(u, "subnet", body))
    assert (more["subnetpool_id"], more["cidr"]) == (made["d4"]["id"], "10.200.1.0/24")
    port = new.run(
        lambda u: local.create(u, "port", {"network_id": made["net"]["id"], "fixed_ips": [{"subnet_id": more["id"]}]})
    )
    assert port["fixed_ips"][0]["ip_address"].startswith("10.200.1.")
    moved = new.run(lambda u: local.update(u, "port", made["ports"][1], {"mac_address": None}))
    assert len(moved["fixed_ips"]) == 2
    shown = new.run(
        lambda u: (
            local.module("network").get(u, made["net"]["id"]).subnet_ids
            and local.update(u, "network", made["net"]["id"], {"name": "still-scoped"})
        )
    )
    assert (shown["ipv4_address_scope"], shown["ipv6_address_scope"]) == (made["s4"]["id"], made["s6"]["id"])
    code, out = cli(schema_url, target, "ipam", "verify")
    assert code == 0, out
    # And back again.
    code, report = cli_json(schema_url, target, "ipam", "migrate", "--to", backend, "--yes")
    assert code == 0 and report["verification"]["clean"], report
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out
    new.dispose()
