"""A bulk port create gives what creating its ports one after the other gives, in one transaction:
the same ports' addresses on the same subnets, or the same first error and nothing created. Drawn by
hypothesis over small subnets that run out, ports without fixed_ips, ports naming one or several
subnets (dual-stack, SLAAC), and ports that the bulk creates on their own (a subnet named twice, [])."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pipam.db.models import Port
from pipam.errors import PipamError
from pipam.service.database import Database
from pipam.testing import local
from pipam.testing.databases import reset
from tests.helpers import net, subnet

# What each port of a bulk asks for, by the names of the network's subnets.
SPECS: dict[str, list[str] | None] = {
    "default": None,
    "a": ["a"],
    "b": ["b"],
    "v6": ["v6"],
    "a+v6": ["a", "v6"],
    "v6+a": ["v6", "a"],
    "b+v6": ["b", "v6"],
    "a+slaac": ["a", "slaac"],
    "slaac": ["slaac"],
    "a+a": ["a", "a"],
    "none": [],
}


@pytest.fixture
def sqlite_db(db: Database, backend: str) -> Database:
    if db.engine.dialect.name != "sqlite" or backend != "internal":
        pytest.skip("the service's logic, on the quickest database")
    return db


def _network(db: Database) -> dict[str, str]:
    """A network whose subnets run out fast: two IPv4 /29 (5 addresses each), a DHCPv6-stateful /125
    and a SLAAC /64; its subnets' and its own id by name."""
    names = {"net": net(db)["id"]}
    names["a"] = subnet(db, names["net"], "10.1.0.0/29")["id"]
    names["b"] = subnet(db, names["net"], "10.2.0.0/29")["id"]
    stateful = {"ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": "dhcpv6-stateful"}
    names["v6"] = subnet(db, names["net"], "2001:db8:1::/125", **stateful)["id"]
    names["slaac"] = subnet(db, names["net"], "2001:db8:2::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")["id"]
    return names


def _body(names: dict[str, str], spec: str) -> dict[str, Any]:
    body: dict[str, Any] = {"network_id": names["net"]}
    if SPECS[spec] is not None:
        body["fixed_ips"] = [{"subnet_id": names[s]} for s in SPECS[spec] or []]
    return body


def _ports(db: Database) -> int:
    return db.run(lambda u: u.session.scalar(select(func.count()).select_from(Port)), write=False)


def _outcome(db: Database, bodies: list[dict[str, Any]], one_by_one: bool) -> Any:
    """The subnets of each created port's addresses by name, or the error and how many ports are left;
    the ports it created are deleted again, so that the other way starts from the same addresses."""
    before = _ports(db)
    try:
        if one_by_one:
            made = db.run(lambda u: [local.create(u, "port", b) for b in bodies])
        else:
            made = db.run(lambda u: local.create_many(u, "port", bodies))
    except PipamError as exc:
        return type(exc).__name__, exc.message, _ports(db) - before
    db.run(lambda u: [local.delete(u, "port", p["id"]) for p in made])
    return [sorted(f["subnet_id"] for f in p["fixed_ips"]) for p in made]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(st.sampled_from(sorted(SPECS)), min_size=1, max_size=14), taken=st.integers(0, 5))
def test_a_bulk_gives_what_one_create_after_the_other_gives(sqlite_db: Database, specs: list[str], taken: int) -> None:
    reset(sqlite_db.engine, "internal")
    names = _network(sqlite_db)
    if taken:  # addresses of subnet a already held
        sqlite_db.run(lambda u: [local.create(u, "port", _body(names, "a")) for _ in range(taken)])
    bodies = [_body(names, s) for s in specs]
    assert _outcome(sqlite_db, bodies, one_by_one=False) == _outcome(sqlite_db, bodies, one_by_one=True)
