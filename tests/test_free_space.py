"""Verify checks each backend's free space, a migration into a target with wrong free space does not
switch, and ``pipam ipam repair`` rebuilds it: on every database, for both backends that keep ranges."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from pipam.cli.main import app
from pipam.db.models import IPAllocation
from pipam.errors import PipamError
from pipam.ipam import state
from pipam.migration.repair import Repairer
from pipam.migration.runner import Migrator, Options
from pipam.migration.verify import verify
from pipam.service.database import Database
from pipam.testing.local import LocalClient, active_driver
from tests import corrupt
from tests.corrupt import ip
from tests.helpers import error_of, net, port, stop_at, subnet

runner = CliRunner()
OTHER = {"builtin": "internal", "internal": "builtin"}


def cli(url: str, backend: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": backend})
    return result.exit_code, result.output


def cli_json(url: str, backend: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = cli(url, backend, *args, "--json")
    return code, json.loads(out)


def found(differences: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Free-space differences as (subnet, kind, first, last)."""
    return {
        (d["subnet_id"], d["kind"], d["range"]["first"], d["range"]["last"])
        for d in differences
        if d["kind"].startswith("free_space_")
    }


# --- the corruptions --------------------------------------------------------------------------


@dataclass
class Case:
    """One subnet on a network of its own, with ports holding ``held``; ``corrupt`` breaks its free
    space and returns the differences verify must report, as (kind, first, last)."""

    cidr: str
    held: list[str]
    corrupt: Callable[[Engine, str, str], set[tuple[str, str, str]]]
    pools: list[tuple[str, str]] | None = None


def every_range_deleted(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    corrupt.delete_all(engine, backend, sid)
    return {("free_space_missing", "10.1.0.2", "10.1.0.6"), ("free_space_missing", "10.1.0.8", "10.1.0.254")}


def reinserted_over_allocated(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    corrupt.insert_range(engine, backend, sid, ip("10.2.0.7"), ip("10.2.0.7"))
    return {("free_space_allocated", "10.2.0.7", "10.2.0.7")}


def shrunk(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    rid, first, _ = corrupt.containing(engine, backend, sid, "10.3.0.40")
    corrupt.set_range(engine, backend, rid, first, ip("10.3.0.58"))
    return {("free_space_missing", "10.3.0.59", "10.3.0.62")}


def split_losing_an_address(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    rid, first, last = corrupt.containing(engine, backend, sid, "10.4.0.40")
    corrupt.set_range(engine, backend, rid, first, ip("10.4.0.39"))
    corrupt.insert_range(engine, backend, sid, ip("10.4.0.41"), last)
    return {("free_space_missing", "10.4.0.40", "10.4.0.40")}


def split_into_overlapping_halves(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    rid, first, last = corrupt.containing(engine, backend, sid, "10.5.0.40")
    corrupt.set_range(engine, backend, rid, first, ip("10.5.0.40"))
    corrupt.insert_range(engine, backend, sid, ip("10.5.0.40"), last)
    return {("free_space_overlap", "10.5.0.40", "10.5.0.40")}


def outside_the_pools(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    corrupt.insert_range(engine, backend, sid, ip("10.6.0.40"), ip("10.6.0.50"))
    return {("free_space_outside_pools", "10.6.0.40", "10.6.0.50")}


def two_overlapping_ranges(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    corrupt.insert_range(engine, backend, sid, ip("10.7.0.40"), ip("10.7.0.45"))
    return {("free_space_overlap", "10.7.0.40", "10.7.0.45")}


def ipv6_range_grown_over_allocated(engine: Engine, backend: str, sid: str) -> set[tuple[str, str, str]]:
    rid, first, _ = corrupt.containing(engine, backend, sid, "2001:db8:8::6")
    corrupt.set_range(engine, backend, rid, first, ip("2001:db8:8::8"))  # over ::7 (held) and into [::8, ...]
    return {
        ("free_space_allocated", "2001:db8:8::7", "2001:db8:8::7"),
        ("free_space_overlap", "2001:db8:8::8", "2001:db8:8::8"),
    }


# One /24 as in the issue; /26s for the rest, to keep filling them to exhaustion quick.
CASES = {
    "every range of a /24 deleted": Case("10.1.0.0/24", ["10.1.0.7"], every_range_deleted),
    "a range re-inserted over an allocated address": Case("10.2.0.0/26", ["10.2.0.7"], reinserted_over_allocated),
    "a range shrunk": Case("10.3.0.0/26", ["10.3.0.7"], shrunk),
    "a range split losing an address": Case("10.4.0.0/26", ["10.4.0.7"], split_losing_an_address),
    "a range split into overlapping halves": Case("10.5.0.0/26", ["10.5.0.7"], split_into_overlapping_halves),
    "a range outside the pools": Case(
        "10.6.0.0/26", ["10.6.0.20"], outside_the_pools, pools=[("10.6.0.10", "10.6.0.30")]
    ),
    "two overlapping ranges": Case("10.7.0.0/26", ["10.7.0.7", "10.7.0.30"], two_overlapping_ranges),
    "an IPv6 /64 range grown over an allocated address": Case(
        "2001:db8:8::/64", ["2001:db8:8::7"], ipv6_range_grown_over_allocated
    ),
}


@dataclass
class Built:
    network_id: str
    subnet_id: str
    case: Case


def build(db: Database) -> dict[str, Built]:
    made = {}
    for name, case in CASES.items():
        n = net(db, name=name)["id"]
        body: dict[str, Any] = {}
        if case.pools is not None:
            body["allocation_pools"] = [{"start": a, "end": b} for a, b in case.pools]
        if ":" in case.cidr:
            body.update(ipv6_address_mode="dhcpv6-stateful", ipv6_ra_mode="dhcpv6-stateful")
        s = subnet(db, n, case.cidr, **body)["id"]
        for address in case.held:
            port(db, n, fixed_ips=[{"ip_address": address}])
        made[name] = Built(n, s, case)
    return made


def corrupt_all(db: Database, backend: str, made: dict[str, Built]) -> set[tuple[str, str, str, str]]:
    expected = set()
    for b in made.values():
        expected |= {(b.subnet_id, *d) for d in b.case.corrupt(db.engine, backend, b.subnet_id)}
    return expected


def all_addresses(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(IPAllocation.ip_address)))


def fill(db: Database, network_id: str) -> list[str]:
    got = []
    while True:
        try:
            got += [f["ip_address"] for f in port(db, network_id)["fixed_ips"]]
        except PipamError as exc:
            assert exc.type == "IpAddressGenerationFailure", exc.message
            return got


# --- verify, repair, exhaustion ---------------------------------------------------------------


def test_verify_reports_each_corruption_and_repair_restores_allocation(db, schema_url, backend):
    made = build(db)
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0 and "free space: agrees (free ranges" in out, out

    # The symptom: with every free range gone, the next port is refused while the /24 is nearly empty.
    deleted = made["every range of a /24 deleted"]
    expected = corrupt_all(db, backend, made)
    assert error_of(lambda: port(db, deleted.network_id)).type == "IpAddressGenerationFailure"

    code, result = cli_json(schema_url, backend, "ipam", "verify")
    assert code == 1 and not result["clean"]
    assert found(result["differences"]) == expected
    assert result["free_space"]["subnets_differing"] == len(CASES)
    code, text = cli(schema_url, backend, "ipam", "verify")
    assert code == 1
    assert f"{made['a range outside the pools'].subnet_id} free_space_outside_pools: 10.6.0.40-10.6.0.50" in text

    # --dry-run lists the same ranges and changes nothing.
    code, plan = cli_json(schema_url, backend, "ipam", "repair", "--backend", backend, "--dry-run")
    assert code == 0 and plan["outcome"] == "dry-run", plan
    assert set(plan["subnets"]) == {b.subnet_id for b in made.values()}
    assert found(plan["found"]["differences"]) == expected
    code, again = cli_json(schema_url, backend, "ipam", "verify")
    assert code == 1 and found(again["differences"]) == expected

    code, report = cli_json(schema_url, backend, "ipam", "repair", "--backend", backend, "--yes")
    assert code == 0 and report["outcome"] == "repaired", report
    assert report["after"]["clean"] and report["fenced_seconds"] is not None
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out
    code, status = cli_json(schema_url, backend, "ipam", "status")
    assert status["fence"] is None

    # Allocation works to exhaustion: every pool address not held is handed out once, then 409.
    before = all_addresses(db)
    for b in made.values():
        if ":" in b.case.cidr:
            more = [port(db, b.network_id)["fixed_ips"][0]["ip_address"] for _ in range(20)]
            assert "2001:db8:8::7" not in more and len(set(more)) == 20
            continue
        cidr = ipaddress.ip_network(b.case.cidr)
        pools = b.case.pools or [(str(cidr[2]), str(cidr[-2]))]  # the default pool: all hosts but the gateway
        size = sum(ip(last) - ip(first) + 1 for first, last in pools)
        held = [a for a in before if ipaddress.ip_address(a) in cidr]
        got = fill(db, b.network_id)
        assert len(got) == size - len(held)
        assert not set(got) & set(held)
    everything = all_addresses(db)
    assert len(everything) == len(set(everything))


def test_repair_refusals_and_the_fence(db, schema_url, backend):
    made = build(db)
    broken = made["a range re-inserted over an allocated address"]
    broken.case.corrupt(db.engine, backend, broken.subnet_id)
    code, out = cli(schema_url, backend, "ipam", "repair", "--backend", backend)
    assert code == 2 and "--yes" in out
    code, out = cli(schema_url, backend, "ipam", "repair", "--backend", "extipam", "--yes")
    assert code == 1 and "nothing to rebuild" in out

    # While it rebuilds, the fence holds address changes on every server; Ctrl-C lifts it, nothing half done.
    class Interrupt:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def phase(self, name: str, total: int) -> None: ...
        def advance(self, n: int) -> None: ...
        def note(self, message: str) -> None: ...
        def close(self) -> None: ...

        def checkpoint(self, name: str) -> None:
            if name == "after-fence":
                err = error_of(lambda: port(db, broken.network_id))
                self.seen.append(f"{err.status} {err.type} {err.message}")
            if name == "in-repair-batch":
                raise KeyboardInterrupt

    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        Repairer(db.engine, db.settings, interrupt).run(backend)
    assert len(interrupt.seen) == 1 and interrupt.seen[0].startswith("503 IpamMigrationInProgress IPAM backend repair")
    assert db.run(lambda u: state.read(u.session).fence) is None
    assert not LocalClient(db).verify().clean  # the interrupted rebuild rolled back

    # A repair killed with the fence up: the next one refuses, unless told to take the fence over.
    stale = state.new_repair_id()
    db.run(lambda u: state.raise_fence(u.session, stale, "a repair that was killed"))
    code, out = cli(schema_url, backend, "ipam", "repair", "--backend", backend, "--yes")
    assert code == 1 and "--take-over-fence" in out and stale in out
    code, out = cli(schema_url, backend, "ipam", "repair", "--backend", backend, "--yes", "--take-over-fence")
    assert code == 0 and "repaired" in out, out
    assert db.run(lambda u: state.read(u.session).fence) is None
    assert LocalClient(db).verify().clean

    # Never during a migration (its journal and fence are its own).
    broken.case.corrupt(db.engine, backend, broken.subnet_id)
    with pytest.raises(KeyboardInterrupt):
        Migrator(db.engine, db.settings, stop_at("after-start")).run(Options(target=OTHER[backend]))
    code, out = cli(schema_url, backend, "ipam", "repair", "--backend", backend, "--yes")
    assert code == 1 and "in progress" in out


# --- migration --------------------------------------------------------------------------------


class Act:
    """Runs ``action`` the first time the migration passes ``point``."""

    def __init__(self, point: str, action: Callable[[], None]) -> None:
        self.point, self.action, self.done = point, action, False

    def phase(self, name: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...

    def checkpoint(self, name: str) -> None:
        if name == self.point and not self.done:
            self.done = True
            self.action()


def test_migration_into_a_target_with_wrong_free_space_does_not_switch(db, schema_url, backend):
    made = build(db)
    target = OTHER[backend]
    b = made["two overlapping ranges"]

    # Corrupted after the copy, before the online verify: that verify finds it.
    observer = Act("after-catch-up", lambda: b.case.corrupt(db.engine, target, b.subnet_id))
    report = Migrator(db.engine, db.settings, observer).run(Options(target=target))
    assert observer.done and report.outcome == "failed", report.message
    assert report.verification is not None
    assert found(report.verification["differences"]) == {(b.subnet_id, "free_space_overlap", "10.7.0.40", "10.7.0.45")}
    assert "free_space_overlap" in report.message
    assert db.run(lambda u: state.read(u.session).active) == backend
    assert db.run(lambda u: state.read(u.session).fence) is None

    # Corrupted under the fence in a subnet the last journal entries touch: the fenced verify finds it.
    c = made["a range shrunk"]
    touch = Act("after-verify", lambda: port(db, c.network_id, fixed_ips=[{"ip_address": "10.3.0.33"}]))
    breaker = Act("after-fence", lambda: c.case.corrupt(db.engine, target, c.subnet_id))

    class Both(Act):
        def checkpoint(self, name: str) -> None:
            touch.checkpoint(name)
            breaker.checkpoint(name)

    report = Migrator(db.engine, db.settings, Both("", lambda: None)).run(Options(target=target))
    assert touch.done and breaker.done and report.outcome == "failed", report.message
    assert found(report.verification["differences"]) == {(c.subnet_id, "free_space_missing", "10.3.0.59", "10.3.0.62")}
    assert db.run(lambda u: state.read(u.session).active) == backend
    assert db.run(lambda u: state.read(u.session).fence) is None


def test_addresses_still_journalled_are_left_out_of_the_online_free_space_check(db, schema_url, backend):
    made = build(db)
    target = OTHER[backend]
    b = made["a range shrunk"]
    moved: list[str] = []

    def change_addresses() -> None:
        # Journalled, not yet replayed when the online verify runs: the target's free space still
        # offers the new address and lacks the released one.
        moved.append(port(db, b.network_id, fixed_ips=[{"ip_address": "10.3.0.39"}])["id"])
        LocalClient(db).delete("port", port(db, b.network_id, fixed_ips=[{"ip_address": "10.3.0.38"}])["id"])

    observer = Act("after-catch-up", change_addresses)
    report = Migrator(db.engine, db.settings, observer).run(Options(target=target))
    assert observer.done and report.outcome == "completed", report.message
    code, out = cli(schema_url, backend, "ipam", "verify")
    assert code == 0, out


def test_a_driver_that_declares_no_free_space_check_is_reported_as_not_checked(db, backend):
    made = build(db)
    b = made["two overlapping ranges"]
    b.case.corrupt(db.engine, backend, b.subnet_id)

    class Undeclared:
        """A driver written before the free-space check: it has neither the attribute nor the method."""

        shared = False

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def dump_subnet(self, subnet_id: str) -> Any:
            return self.inner.dump_subnet(subnet_id)

        def subnet_ids(self, after: str | None, limit: int) -> list[str]:
            return self.inner.subnet_ids(after, limit)

    result = db.run(lambda u: verify(u.session, Undeclared(active_driver(u))), write=False)
    assert result.free_space == {"check": "none", "subnets_checked": 0, "differences": 0}
    assert result.as_dict()["free_space"]["subnets_differing"] == 0
    checked = db.run(lambda u: verify(u.session, active_driver(u)), write=False)
    assert checked.free_space["check"] == "ranges" and checked.free_space_subnets == {b.subnet_id}
