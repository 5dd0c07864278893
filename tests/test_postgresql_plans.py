"""PostgreSQL's plans for statements whose cost must not grow with the tables: each test loads 20,000
ports on one network, without statistics or with them, and checks the plan of a statement as Pipam
sends it. Those plans scanned every row before (the tests fail on the old statement or schema)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text

from pipam.service.database import Database
from pipam.service.listing import ListQuery, list_items
from pipam.service.policy import ADMIN
from pipam.service.resources import discover
from pipam.service.resources.ports import _random_macs
from pipam.testing import local
from tests.helpers import net, statement_sent, subnet

PORTS = 20_000


@pytest.fixture
def loaded(db: Database, backend: str) -> tuple[Database, str]:
    """20,000 ports with an address each, on one network; the tables are not analyzed."""
    if db.engine.dialect.name != "postgresql" or backend != "internal":
        pytest.skip("PostgreSQL's plans; the backend does not matter")
    network = net(db)
    sub = subnet(db, network["id"], "10.0.0.0/16")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO ports (id, network_id, mac_address, admin_state_up, status, device_id, device_owner,"
            " project_id, name, description, tags, revision_number, created_at, updated_at)"
            " SELECT md5(i::text), %(net)s, 'm' || i, true, 'DOWN', '', '', '', '', '', '[]', 0, now(), now()"
            f" FROM generate_series(1, {PORTS}) AS i",
            {"net": network["id"]},
        )
        conn.exec_driver_sql(
            "INSERT INTO ipallocations (ip_address, subnet_id, ip_key, port_id, network_id)"
            " SELECT i::text, %(sub)s, lpad(i::text, 32, '0'), md5(i::text), %(net)s"
            f" FROM generate_series(1, {PORTS}) AS i",
            {"sub": sub["id"], "net": network["id"]},
        )
    return db, network["id"]


def _plan(db: Database, statement: str, parameters: Any) -> str:
    """The plan, each array of values cut short (a check's 1,000 MACs would fill a failure's message)."""
    with db.engine.connect() as conn:
        rows = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)]
    return "\n".join(re.sub(r"'\{[^}]*\}'", "'{...}'", r).split("  (cost=")[0] for r in rows)


def test_a_page_looks_its_addresses_up_instead_of_scanning_them(loaded):
    """The first page of the ports reads its addresses through their index. Joined to the page, a
    PostgreSQL that knew the tables' sizes hashed the page and scanned every address, so a page took
    longer the more ports there were (24-35 ms over 103,500 ports, 6 ms over 10,000)."""
    db, _ = loaded
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE ports, ipallocations")
    ports = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")
    page: list[Any] = []

    def read() -> None:
        page.extend(db.run(lambda u: list_items(u.tx, ports, ListQuery(limit=1000), ADMIN).items, write=False))

    statement, parameters = statement_sent(db, read, "SELECT ipallocations.")
    assert len(page) == 1000 and all(len(p.fixed_ips) == 1 for p in page)
    plan = _plan(db, statement, parameters)
    assert "ix_ipallocations_port_covering" in plan and "Seq Scan on ipallocations" not in plan, plan


def test_a_bulk_creates_mac_check_asks_by_mac_alone(loaded):
    """A bulk create's check of its 1,000 drawn MACs, on tables never analyzed, reads no port by its
    network. Asked with the network too, PostgreSQL read every port of the network through an index of
    network_id and compared each with all the MACs: 0.56 ms a port of a bulk create at 10,000 ports on
    one network, 2.6 ms at 50,000. By MAC alone it looks each one up in the MAC's index, or reads the
    table once while PostgreSQL reckons that cheaper."""
    db, network_id = loaded
    macs: list[str] = []
    statement, parameters = statement_sent(
        db,
        lambda: macs.extend(db.run(lambda u: _random_macs(u, network_id, 1000))),
        "SELECT ports.",
        first_of_many=True,
    )
    assert len(set(macs)) == 1000
    plan = _plan(db, statement, parameters)
    assert "network_id" not in plan and "uq_ports_network_id_mac" not in plan, plan


def test_a_bulk_creates_mac_check_is_planned_for_its_values_each_time(db: Database, backend: str):
    """psycopg prepares a statement on its fifth run, and PostgreSQL may then keep one generic plan of
    it until the table is next analyzed. For the MAC check that plan, made while the table was small,
    compared every port with each of the 1,000 MACs: 2.8 s a bulk create at 100,000 ports on tables never
    analyzed. The check is sent unprepared; the statements around it are still prepared."""
    if db.engine.dialect.name != "postgresql" or backend != "internal":
        pytest.skip("PostgreSQL's prepared statements; the backend does not matter")
    network = net(db)
    subnet(db, network["id"], "10.0.0.0/24")

    def bulks_then_prepared(u: Any) -> list[str]:  # one transaction: prepared statements are per connection
        for _ in range(8):
            local.create_many(u, "port", [{"network_id": network["id"]}] * 3)
        return list(u.session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())

    prepared = db.run(bulks_then_prepared)
    assert any(s.startswith("INSERT INTO ports") for s in prepared), prepared
    assert not [s for s in prepared if "ports.mac_address IN" in s], prepared
