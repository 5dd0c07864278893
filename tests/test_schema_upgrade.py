"""Databases made by earlier releases upgrade in place with nothing lost.

``tests/legacy_schema`` holds the Alembic revisions as the first release shipped them (core revisions
0001 and 0002 created the internal driver's tables too); a database is built with them, filled, then
upgraded by today's code, which moved those tables into the internal driver's own branch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pipam.config import load_settings
from pipam.db import schema
from pipam.db.base import utcnow
from pipam.ipam.registry import schema_locations
from pipam.service.bootstrap import schema_status, upgrade_database
from pipam.service.database import Database
from pipam.testing.local import LocalClient
from tests.databases import fresh_url
from tests.helpers import error_of, ips, net, port, subnet

LEGACY = Path(__file__).parent / "legacy_schema"
NET, POOL, SUB, PORT1, PORT2 = (str(uuid.uuid4()) for _ in range(5))


def legacy(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(schema.MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(LEGACY / "versions"))
    _alembic(engine, cfg, command.upgrade, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Today's revisions, core and drivers, taken down to ``revision``."""
    _alembic(engine, schema.alembic_config(engine, schema_locations()), command.downgrade, revision)


def _alembic(engine: sa.Engine, cfg: Config, step: Callable[[Config, str], None], revision: str) -> None:
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        step(cfg, revision)


@pytest.fixture
def old_db(db_kind: str, tmp_path: Path) -> Iterator[Database]:
    url = fresh_url(db_kind, str(tmp_path), "legacy")
    database = Database(load_settings(database_url=url, ipam_driver="internal"))
    yield database
    database.dispose()


def _std(name: str = "") -> dict[str, object]:
    now = utcnow()
    return {
        "project_id": "p1",
        "name": name,
        "description": "",
        "tags": [],
        "revision_number": 0,
        "created_at": now,
        "updated_at": now,
    }


def _fill(conn: sa.Connection, with_pool: bool) -> None:
    meta = sa.MetaData()
    meta.reflect(conn)
    t = meta.tables
    for table in t.values():  # MariaDB reflects JSON columns as text: bind them as JSON again
        for column in table.columns:
            if column.name in ("tags", "dns_nameservers", "host_routes", "options", "report"):
                column.type = sa.JSON()
    conn.execute(t["ipam_state"].insert().values(id=1, active_backend="internal", updated_at=utcnow()))
    conn.execute(
        t["networks"].insert().values(id=NET, admin_state_up=True, shared=False, status="ACTIVE", mtu=1500, **_std("n"))
    )
    if with_pool:
        conn.execute(
            t["subnetpools"]
            .insert()
            .values(
                id=POOL,
                ip_version=4,
                default_prefixlen=24,
                min_prefixlen=16,
                max_prefixlen=28,
                shared=False,
                is_default=False,
                **_std(),
            )
        )
        conn.execute(t["subnetpoolprefixes"].insert().values(subnetpool_id=POOL, cidr="10.60.0.0/22"))
    conn.execute(
        t["subnets"]
        .insert()
        .values(
            id=SUB,
            network_id=NET,
            ip_version=4,
            cidr="10.60.0.0/28" if not with_pool else "10.60.0.0/24",
            gateway_ip="10.60.0.1",
            enable_dhcp=True,
            subnetpool_id=POOL if with_pool else None,
            dns_nameservers=[],
            host_routes=[],
            **_std("old"),
        )
    )
    if with_pool:
        return
    # A /28 whose pool 10.60.0.2-14 holds two ports' addresses, in the core and the internal driver's tables.
    conn.execute(
        t["ipallocationpools"]
        .insert()
        .values(
            id="core-pool",
            subnet_id=SUB,
            first_ip="10.60.0.2",
            last_ip="10.60.0.14",
            first_key=f"{0x0A3C0002:032x}",
            last_key=f"{0x0A3C000E:032x}",
        )
    )
    for pid, mac, ip in ((PORT1, "fa:16:3e:00:00:01", "10.60.0.2"), (PORT2, "fa:16:3e:00:00:02", "10.60.0.9")):
        conn.execute(
            t["ports"]
            .insert()
            .values(
                id=pid,
                network_id=NET,
                mac_address=mac,
                admin_state_up=True,
                status="DOWN",
                device_id="",
                device_owner="",
                **_std(),
            )
        )
        key = f"{int.from_bytes(bytes(map(int, ip.split('.'))), 'big'):032x}"
        conn.execute(
            t["ipallocations"].insert().values(ip_address=ip, subnet_id=SUB, ip_key=key, port_id=pid, network_id=NET)
        )
    conn.execute(t["ipam_subnets"].insert().values(id="ipam-s", subnet_id=SUB, cidr="10.60.0.0/28", ip_version=4))
    conn.execute(
        t["ipam_allocation_pools"]
        .insert()
        .values(
            id="ipam-p",
            ipam_subnet_id="ipam-s",
            first_ip="10.60.0.2",
            last_ip="10.60.0.14",
            first_key=f"{0x0A3C0002:032x}",
            last_key=f"{0x0A3C000E:032x}",
        )
    )
    for ip in ("10.60.0.2", "10.60.0.9"):
        conn.execute(t["ipam_allocations"].insert().values(ipam_subnet_id="ipam-s", ip_address=ip, status="ALLOCATED"))
    for first, last in ((0x0A3C0003, 0x0A3C0008), (0x0A3C000A, 0x0A3C000E)):
        conn.execute(
            t["ipam_availability_ranges"]
            .insert()
            .values(ipam_subnet_id="ipam-s", pool_id="ipam-p", first_key=f"{first:032x}", last_key=f"{last:032x}")
        )


def test_a_database_at_the_first_releases_head_upgrades_with_nothing_lost(old_db):
    legacy(old_db.engine, "0002")
    with old_db.engine.begin() as conn:
        _fill(conn, with_pool=False)
    before, after = upgrade_database(old_db.engine, "internal")
    assert before == {"0002"}
    assert schema_status(old_db.engine).is_current and "internal_0001" in after
    client = LocalClient(old_db)
    assert client.verify().clean
    assert ips(client.show("port", PORT1)) == ["10.60.0.2"] and ips(client.show("port", PORT2)) == ["10.60.0.9"]
    # The free space came through too: the other 11 addresses, each once, then exhaustion.
    new = [ips(port(old_db, NET))[0] for _ in range(11)]
    assert sorted(new) == sorted(f"10.60.0.{i}" for i in range(3, 15) if i != 9)
    with pytest.raises(Exception, match="No more IP addresses"):
        port(old_db, NET)
    assert client.verify().clean


def test_upgrade_from_0001_builds_free_blocks(old_db):
    """A database with pools and subnets from before the free-block table gets it filled correctly."""
    legacy(old_db.engine, "0001")
    with old_db.engine.begin() as conn:
        _fill(conn, with_pool=True)
    upgrade_database(old_db.engine, "internal")
    assert schema_status(old_db.engine).is_current
    got = {subnet(old_db, NET, subnetpool_id=POOL)["cidr"] for _ in range(3)}
    assert got == {"10.60.1.0/24", "10.60.2.0/24", "10.60.3.0/24"}


def test_upgrade_keeps_address_scope_ids_and_one_default_pool(old_db):
    """Revision 0004: pools of earlier releases named address scopes that did not exist, and could
    all be defaults; the ids become scopes and the oldest default per IP version stays the default."""
    legacy(old_db.engine, "0001")  # 0002 builds the pools' free space
    scope = str(uuid.uuid4())
    pools = {name: str(uuid.uuid4()) for name in ("old4", "new4", "v6", "scoped6")}
    with old_db.engine.begin() as conn:
        _fill(conn, with_pool=True)
        meta = sa.MetaData()
        meta.reflect(conn, only=["subnetpools", "subnetpoolprefixes"])
        t = meta.tables
        t["subnetpools"].c.tags.type = sa.JSON()
        rows = (  # name, ip version, default, address scope, seconds older
            ("old4", 4, True, scope, 30),
            ("new4", 4, True, None, 10),
            ("v6", 6, True, None, 20),
            ("scoped6", 6, False, scope, 0),
        )
        for name, version, default, scope_id, age in rows:
            values = {**_std(name), "created_at": utcnow() - timedelta(seconds=age)}
            conn.execute(
                t["subnetpools"]
                .insert()
                .values(
                    id=pools[name],
                    ip_version=version,
                    default_prefixlen=24 if version == 4 else 64,
                    min_prefixlen=8 if version == 4 else 48,
                    max_prefixlen=32 if version == 4 else 128,
                    shared=False,
                    is_default=default,
                    address_scope_id=scope_id,
                    **values,
                )
            )
            prefix = {"old4": "10.70.0.0/16", "new4": "10.71.0.0/16", "v6": "2001:db8:1::/48"}.get(
                name, "2001:db8:2::/48"
            )
            conn.execute(t["subnetpoolprefixes"].insert().values(subnetpool_id=pools[name], cidr=prefix))
    upgrade_database(old_db.engine, "internal")
    client = LocalClient(old_db)
    made = client.show("address_scope", scope)
    assert (made["ip_version"], made["project_id"]) == (4, "p1")
    shown = {name: client.show("subnetpool", pid) for name, pid in pools.items()}
    assert {n: p["is_default"] for n, p in shown.items()} == {"old4": True, "new4": False, "v6": True, "scoped6": False}
    assert {n: p["address_scope_id"] for n, p in shown.items()} == {
        "old4": scope,
        "new4": None,
        "v6": None,
        "scoped6": None,  # a v6 pool cannot be in the v4 scope
    }
    n = net(old_db)["id"]
    assert subnet(old_db, n, ip_version=4, use_default_subnetpool=True)["subnetpool_id"] == pools["old4"]
    assert error_of(lambda: client.update("subnetpool", pools["new4"], is_default=True)).type == "InvalidInput"
    assert net(old_db)["router:external"] is False


def _addresses(engine: sa.Engine) -> set[tuple[str, str, str, str, str]]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT port_id, ip_address, subnet_id, ip_key, network_id FROM ipallocations"))


def _ports(engine: sa.Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT id, mac_address FROM ports"))


def _without_rowid(engine: sa.Engine) -> bool:
    """Whether SQLite stores ports in id order: a ``WITHOUT ROWID`` table has no rowid to select."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql("SELECT rowid FROM ports LIMIT 1").all()
        except sa.exc.OperationalError as exc:
            assert "rowid" in str(exc)
            return True
    return False


def _port_indexes(engine: sa.Engine) -> dict[str, list[str]]:
    indexes = sa.inspect(engine).get_indexes("ipallocations")
    return {i["name"]: list(i["column_names"]) for i in indexes if "port_id" in i["column_names"]}


def test_revision_0006_keeps_every_port_and_address_down_and_up(old_db, db_kind):
    """Revision 0006 builds ports and ipallocations anew on SQLite (ports in id order) and widens the
    index of a port's addresses everywhere. Down to 0005 and up again, every port and address is kept,
    and deleting a port still deletes its addresses (ipallocations still references ports)."""
    engine = old_db.engine
    legacy(engine, "0002")
    with engine.begin() as conn:
        _fill(conn, with_pool=False)
    upgrade_database(engine, "internal")
    for _ in range(5):
        port(old_db, NET)
    ports, addresses = _ports(engine), _addresses(engine)
    assert len(ports) == len(addresses) == 7
    covering = {"ix_ipallocations_port_covering": ["port_id", "ip_key", "ip_address", "subnet_id", "network_id"]}
    assert _port_indexes(engine) == covering
    sqlite = db_kind == "sqlite"  # PostgreSQL and MariaDB have no rowid to look for
    if sqlite:
        assert _without_rowid(engine)

    downgrade(engine, "0005")
    assert "0005" in schema.current_revisions(engine)
    assert (_ports(engine), _addresses(engine)) == (ports, addresses)
    assert _port_indexes(engine) == {"ix_ipallocations_port_id": ["port_id"]}
    if sqlite:
        assert not _without_rowid(engine)

    upgrade_database(engine, "internal")
    assert schema_status(engine).is_current
    assert (_ports(engine), _addresses(engine)) == (ports, addresses)
    assert _port_indexes(engine) == covering
    if sqlite:
        assert _without_rowid(engine)
    client = LocalClient(old_db)
    assert ips(client.show("port", PORT1)) == ["10.60.0.2"] and client.verify().clean

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ports WHERE id = :id"), {"id": PORT1})
    assert {a for a in addresses if a[0] != PORT1} == _addresses(engine)


def test_revision_0006_that_cannot_keep_the_reference_changes_nothing(old_db, db_kind):
    """On a SQLite whose ``ALTER TABLE`` leaves references behind (foreign keys off, the legacy rename),
    the rebuild would leave ipallocations referencing a table that no longer exists: the revision
    raises, and the whole of it rolls back."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's table rebuild")
    engine = old_db.engine
    legacy(engine, "0002")
    with engine.begin() as conn:
        _fill(conn, with_pool=False)
    upgrade_database(engine, "internal")
    downgrade(engine, "0005")
    ports, addresses = _ports(engine), _addresses(engine)

    def legacy_rename(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")
        dbapi_conn.execute("PRAGMA legacy_alter_table=ON")

    sa.event.listen(engine, "connect", legacy_rename)
    engine.dispose()
    try:
        with pytest.raises(RuntimeError, match=r"ipallocations references .*ports_rebuilt"):
            upgrade_database(engine, "internal")
    finally:
        sa.event.remove(engine, "connect", legacy_rename)
        engine.dispose()
    assert "0005" in schema.current_revisions(engine)
    assert (_ports(engine), _addresses(engine)) == (ports, addresses)
    assert _port_indexes(engine) == {"ix_ipallocations_port_id": ["port_id"]}
    with engine.connect() as conn:
        assert not conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name LIKE '%rebuilt%'").all()
