"""MariaDB's and PostgreSQL's plans for the lookups of free ranges, in the transaction that claims from
them: a lookup must read about one range per address, however many ranges the subnet has. MariaDB planned
the per-address ``ORDER BY first_key DESC LIMIT 1`` as a walk over the subnet's ranges (hundreds read per
address at 1,000 SLAAC ports), and a bulk's lookup of many addresses as a correlated ``max()`` in an
``IN`` was planned by PostgreSQL as a hash join over all of them; the tests fail on those statements."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event

from pipam.service.database import Database
from pipam.testing import local
from tests.helpers import net, port, subnet

PORTS = 1_000


@pytest.fixture
def slaac(db: Database, backend: str) -> tuple[Database, str]:
    """A network whose only subnet is SLAAC, with 1,000 ports: about as many free ranges, each EUI-64
    address of a random MAC splitting one (the MACs share a prefix, so the ranges crowd one part)."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite plans without statistics; its lookups are index probes as written")
    network = net(db)["id"]
    subnet(db, network, "2001:db8:7::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    db.run(lambda u: local.create_many(u, "port", [{"network_id": network}] * PORTS))
    return db, network


def _rows_read(cursor: Any, dialect: str, statement: str, parameters: Any) -> int:
    """The rows the database read from the free ranges for the statement, run again under ``ANALYZE``:
    each table's rows per loop times its loops (a subquery answered from the index alone reads none)."""
    if dialect == "postgresql":
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
        plan = cursor.fetchone()[0]
        rows, loops, table = "Actual Rows", "Actual Loops", "Relation Name"
    else:
        cursor.execute(f"ANALYZE FORMAT=JSON {statement}", parameters)
        plan = json.loads(cursor.fetchone()[0])
        rows, loops, table = "r_rows", "r_loops", "table_name"

    def scans(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            here = [node] if "availabilit" in str(node.get(table, "")) else []
            return here + [t for value in node.values() for t in scans(value)]
        if isinstance(node, list):
            return [t for value in node for t in scans(value)]
        return []

    return sum(round((t.get(loops) or 0) * (t.get(rows) or 0)) for t in scans(plan))


def _lookups_read(db: Database, run: Any) -> list[int]:
    """The rows read by each lookup of a free range that ``run`` sends, analyzed in its own transaction."""
    read: list[int] = []

    def analyze(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if (
            statement.startswith("SELECT")
            and "availabilit" in statement
            and "first_key <=" in statement.replace("below.", "")
        ):
            cursor = conn.connection.dbapi_connection.cursor()
            read.append(_rows_read(cursor, conn.dialect.name, statement, parameters))

    event.listen(db.engine, "after_cursor_execute", analyze)
    try:
        run()
    finally:
        event.remove(db.engine, "after_cursor_execute", analyze)
    return read


def test_a_bulk_of_slaac_ports_reads_about_one_range_per_address(slaac: tuple[Database, str]) -> None:
    db, network = slaac
    read = _lookups_read(db, lambda: db.run(lambda u: local.create_many(u, "port", [{"network_id": network}] * 200)))
    assert read and sum(read) <= 2 * 200, read


def test_one_slaac_port_reads_about_one_range(slaac: tuple[Database, str]) -> None:
    db, network = slaac
    for _ in range(5):
        read = _lookups_read(db, lambda: port(db, network))
        assert read and max(read) <= 2, read
