"""MariaDB's plans for the lookup of a free range, in the transaction that claims from it: it must read
the one range it answers, however many ranges the subnet has (the tests fail on the old statement)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event

from pipam.service.database import Database
from pipam.testing import local
from tests.helpers import net, subnet

PORTS = 1_000


@pytest.fixture
def slaac(db: Database) -> tuple[Database, str]:
    """A network whose only subnet is SLAAC, with 1,000 ports: as many free ranges, each EUI-64 address
    of a random MAC splitting one (the MACs share a prefix, so the ranges crowd one part of the subnet)."""
    if db.engine.dialect.name != "mysql":
        pytest.skip("MariaDB's plans")
    network = net(db)["id"]
    subnet(db, network, "2001:db8:7::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    db.run(lambda u: local.create_many(u, "port", [{"network_id": network}] * PORTS))
    return db, network


def _rows_read(cursor: Any, statement: str, parameters: Any) -> list[int]:
    """The rows MariaDB read for each table of the statement, run again under ``ANALYZE``."""
    cursor.execute(f"ANALYZE FORMAT=JSON {statement}", parameters)
    plan = json.loads(cursor.fetchone()[0])

    def tables(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            here = [node["table"]] if isinstance(node.get("table"), dict) else []
            return here + [t for value in node.values() for t in tables(value)]
        if isinstance(node, list):
            return [t for value in node for t in tables(value)]
        return []

    return [int(t.get("r_rows", 0)) for t in tables(plan)]


def test_a_slaac_ports_free_range_lookup_reads_one_range(slaac: tuple[Database, str]) -> None:
    db, network = slaac
    lookups = 0
    read: list[list[int]] = []

    def analyze(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        # Every 20th lookup of a range, in the bulk's own transaction: the plan MariaDB picks there.
        nonlocal lookups
        if statement.startswith("SELECT") and "availability" in statement and "last_key" in statement:
            lookups += 1
            if lookups % 20 == 0:
                read.append(_rows_read(conn.connection.dbapi_connection.cursor(), statement, parameters))

    event.listen(db.engine, "after_cursor_execute", analyze)
    try:
        db.run(lambda u: local.create_many(u, "port", [{"network_id": network}] * 200))
    finally:
        event.remove(db.engine, "after_cursor_execute", analyze)
    assert len(read) == 10
    assert max(max(r) for r in read) <= 2, read
