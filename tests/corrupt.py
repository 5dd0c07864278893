"""Corrupting a backend's free space in its own tables, as a bug or a bad manual edit would.

Works for the two backends that keep free ranges: builtin (``ipavailabilityranges``, one owner per
core subnet) and internal (``ipam_availability_ranges``, owned by its ``ipam_subnets`` row).
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import Engine, Table, delete, insert, select, update

from pipam.db.models import IPAvailabilityRange
from pipam.ipam.addr import to_key
from pipam.ipam.drivers.internal.models import IpamAvailabilityRange, IpamSubnet


def _table(backend: str) -> tuple[Table, str]:
    if backend == "builtin":
        return IPAvailabilityRange.__table__, "subnet_id"  # type: ignore[return-value]
    if backend == "internal":
        return IpamAvailabilityRange.__table__, "ipam_subnet_id"  # type: ignore[return-value]
    raise ValueError(f"{backend} keeps no free ranges")


def _owner(engine: Engine, backend: str, subnet_id: str) -> str:
    if backend == "builtin":
        return subnet_id
    with engine.connect() as conn:
        owner = conn.scalar(select(IpamSubnet.id).where(IpamSubnet.subnet_id == subnet_id))
    assert owner is not None, f"internal holds no subnet {subnet_id}"
    return owner


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def ranges(engine: Engine, backend: str, subnet_id: str) -> list[tuple[int, int, int]]:
    """(row id, first, last) of the subnet's free ranges, by first address."""
    table, owner = _table(backend)
    owner_id = _owner(engine, backend, subnet_id)
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.id, table.c.first_key, table.c.last_key)
            .where(table.c[owner] == owner_id)
            .order_by(table.c.first_key)
        )
        return [(rid, int(a, 16), int(b, 16)) for rid, a, b in rows]


def containing(engine: Engine, backend: str, subnet_id: str, address: str) -> tuple[int, int, int]:
    value = ip(address)
    return next(r for r in ranges(engine, backend, subnet_id) if r[1] <= value <= r[2])


def delete_all(engine: Engine, backend: str, subnet_id: str) -> None:
    table, owner = _table(backend)
    owner_id = _owner(engine, backend, subnet_id)
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c[owner] == owner_id))


def delete_range(engine: Engine, backend: str, row_id: int) -> None:
    table, _ = _table(backend)
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id == row_id))


def set_range(engine: Engine, backend: str, row_id: int, first: int, last: int) -> None:
    table, _ = _table(backend)
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == row_id).values(first_key=to_key(first), last_key=to_key(last)))


def insert_range(engine: Engine, backend: str, subnet_id: str, first: int, last: int) -> None:
    table, owner = _table(backend)
    owner_id = _owner(engine, backend, subnet_id)
    with engine.begin() as conn:
        pool = conn.scalar(select(table.c.pool_id).where(table.c[owner] == owner_id))
        conn.execute(
            insert(table).values(
                {
                    owner: owner_id,
                    "pool_id": pool or "corrupt",
                    "first_key": to_key(first),
                    "last_key": to_key(last),
                }
            )
        )
