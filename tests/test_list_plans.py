"""How a page of the port list reads its rows on SQLite and MariaDB (revision 0006): the ports in the
order they are stored, and their addresses from an index alone. Before, SQLite walked the index of id and
looked each port up in the table, and both databases looked each address up in the table after its index;
the tests fail on that schema."""

from __future__ import annotations

from typing import Any

import pytest

from pipam.service.database import Database
from pipam.service.listing import ListQuery, list_items
from pipam.service.policy import ADMIN
from pipam.service.resources import discover
from pipam.testing import local
from tests.helpers import net, statements_sent, subnet

PORTS = 300


@pytest.fixture
def page_statements(db: Database, backend: str) -> tuple[Database, list[tuple[str, Any]]]:
    """The statements a page of 300 ports with an address each sends, and their parameters."""
    if db.engine.dialect.name == "postgresql" or backend != "internal":
        pytest.skip("SQLite's and MariaDB's plans (PostgreSQL's: test_postgresql_plans); the backend does not matter")
    network = net(db)["id"]
    subnet(db, network, "10.0.0.0/22")
    db.run(lambda u: local.create_many(u, "port", [{"network_id": network}] * PORTS))
    ports = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")
    page: list[Any] = []
    with statements_sent(db) as sent:
        page.extend(db.run(lambda u: list_items(u.tx, ports, ListQuery(limit=1000), ADMIN).items, write=False))
    assert len(page) == PORTS and all(len(p.fixed_ips) == 1 for p in page)
    return db, [(s, p) for s, p in sent if s.startswith("SELECT")]


def _plan(db: Database, statement: str, parameters: Any) -> list[Any]:
    explain = "EXPLAIN QUERY PLAN" if db.engine.dialect.name == "sqlite" else "EXPLAIN"
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(f"{explain} {statement}", parameters)]


def _one(sent: list[tuple[str, Any]], starts: str) -> tuple[str, Any]:
    ((one),) = [(s, p) for s, p in sent if s.startswith(starts)]
    return one


def test_a_page_reads_the_ports_in_their_stored_order_on_sqlite(page_statements):  # type: ignore[no-untyped-def]
    db, sent = page_statements
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's storage order; MariaDB's InnoDB stores every table in its key's order")
    details = [row[-1] for row in _plan(db, *_one(sent, "SELECT ports."))]
    # Not "SCAN ports USING INDEX sqlite_autoindex_ports_1": the id index walked, each row looked up.
    assert details == ["SCAN ports"], details


def test_a_pages_addresses_are_read_from_their_index_alone(page_statements):  # type: ignore[no-untyped-def]
    db, sent = page_statements
    plan = _plan(db, *_one(sent, "SELECT ipallocations."))
    if db.engine.dialect.name == "sqlite":
        details = [row[-1] for row in plan]
        assert any("USING COVERING INDEX ix_ipallocations_port_covering" in d for d in details), details
        return
    # MariaDB's EXPLAIN: id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
    (addresses,) = [row for row in plan if row[2] == "ipallocations"]
    assert addresses[5] == "ix_ipallocations_port_covering" and "Using index" in (addresses[9] or ""), plan
