"""How a page of the port list reads its rows on SQLite and MariaDB (revision 0006): the ports in the
order they are stored, and their addresses from an index alone. Before, SQLite walked the index of id and
looked each port up in the table, and both databases looked each address up in the table after its index;
the tests fail on that schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipam.service.database import Database
from pipam.service.listing import ListQuery, list_items
from pipam.service.policy import ADMIN
from pipam.service.resources import discover
from pipam.testing import local
from tests.helpers import net, statement_sent, subnet

PORTS = 300


@pytest.fixture
def read_page(db: Database, backend: str) -> tuple[Database, Callable[[], None]]:
    """A call that reads a page of 300 ports with an address each."""
    if db.engine.dialect.name == "postgresql" or backend != "internal":
        pytest.skip("SQLite's and MariaDB's plans (PostgreSQL's: test_postgresql_plans); the backend does not matter")
    network = net(db)["id"]
    subnet(db, network, "10.0.0.0/22")
    db.run(lambda u: local.create_many(u, "port", [{"network_id": network}] * PORTS))
    ports = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")

    def read() -> None:
        page = db.run(lambda u: list_items(u.tx, ports, ListQuery(limit=1000), ADMIN).items, write=False)
        assert len(page) == PORTS and all(len(p.fixed_ips) == 1 for p in page)

    return db, read


def _plan(db: Database, statement: str, parameters: Any) -> list[Any]:
    explain = "EXPLAIN QUERY PLAN" if db.engine.dialect.name == "sqlite" else "EXPLAIN"
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(f"{explain} {statement}", parameters)]


def test_a_page_reads_the_ports_in_their_stored_order_on_sqlite(read_page):  # type: ignore[no-untyped-def]
    db, read = read_page
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's storage order; MariaDB's InnoDB stores every table in its key's order")
    details = [row[-1] for row in _plan(db, *statement_sent(db, read, "SELECT ports."))]
    # Not "SCAN ports USING INDEX sqlite_autoindex_ports_1": the id index walked, each row looked up.
    assert details == ["SCAN ports"], details


def test_a_pages_addresses_are_read_from_their_index_alone(read_page):  # type: ignore[no-untyped-def]
    db, read = read_page
    plan = _plan(db, *statement_sent(db, read, "SELECT ipallocations."))
    if db.engine.dialect.name == "sqlite":
        details = [row[-1] for row in plan]
        assert any("USING COVERING INDEX ix_ipallocations_port_covering" in d for d in details), details
        return
    # MariaDB's EXPLAIN: id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
    (addresses,) = [row for row in plan if row[2] == "ipallocations"]
    assert addresses[5] == "ix_ipallocations_port_covering" and "Using index" in (addresses[9] or ""), plan
