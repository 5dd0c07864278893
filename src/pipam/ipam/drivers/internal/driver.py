"""The reference driver: default for new databases, state in its own ``ipam_*`` tables."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import ClassVar

import netaddr
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from pipam.db.base import new_id
from pipam.errors import IpamSubnetNotFound
from pipam.ipam.addr import to_key
from pipam.ipam.drivers.internal.models import (
    IpamAllocation,
    IpamAllocationPool,
    IpamAvailabilityRange,
    IpamSubnet,
)
from pipam.ipam.free_ranges import PoolBounds, RangeStore
from pipam.ipam.interface import (
    DriverContext,
    FreeRanges,
    FreeSpace,
    FreeSpaceCheck,
    SpecificSubnetRequest,
    SubnetState,
)
from pipam.ipam.range_subnet import RangeSubnet

RANGES = RangeStore(IpamAvailabilityRange.__table__, "ipam_subnet_id")  # type: ignore[arg-type]


class TableLedger:
    """Allocations recorded in ``ipam_allocations``; its primary key rejects a second holder."""

    def __init__(self, ipam_subnet_id: str) -> None:
        self.ipam_subnet_id = ipam_subnet_id

    def holds(self, session: Session, address: str) -> bool:
        return session.get(IpamAllocation, (self.ipam_subnet_id, address)) is not None

    def record(self, session: Session, addresses: list[str]) -> None:
        session.connection().execute(
            _RECORD,
            [{"ipam_subnet_id": self.ipam_subnet_id, "ip_address": a, "status": "ALLOCATED"} for a in addresses],
        )

    def forget(self, session: Session, address: str) -> bool:
        params = {"sid": self.ipam_subnet_id, "ip": address}
        return session.connection().execute(_FORGET, params).rowcount == 1


_SUBNET_WITH_POOLS = (
    select(
        IpamSubnet.id, IpamSubnet.cidr, IpamAllocationPool.id, IpamAllocationPool.first_key, IpamAllocationPool.last_key
    )
    .outerjoin(IpamAllocationPool, IpamAllocationPool.ipam_subnet_id == IpamSubnet.id)
    .where(IpamSubnet.subnet_id == bindparam("subnet_id"))
)
_RECORD = insert(IpamAllocation)
_FORGET = delete(IpamAllocation).where(
    IpamAllocation.ipam_subnet_id == bindparam("sid"), IpamAllocation.ip_address == bindparam("ip")
)


class InternalDriver:
    name: ClassVar[str] = "internal"
    deprecated: ClassVar[bool] = False
    shared: ClassVar[bool] = False
    settings_model: ClassVar[None] = None
    schema: ClassVar[Path] = Path(__file__).parent / "migrations"
    free_space_check: ClassVar[FreeSpaceCheck] = "ranges"
    in_database: ClassVar[bool] = True  # every call goes through the request's session
    automatic_bulk: ClassVar[bool] = True  # RangeSubnet answers AutomaticBulkRequest

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        self.session = context.session

    def _row(self, subnet_id: str) -> IpamSubnet | None:
        return self.session.scalar(select(IpamSubnet).where(IpamSubnet.subnet_id == subnet_id))

    def _subnet(self, subnet_id: str, ipam_id: str, cidr: str, pools: list[PoolBounds]) -> RangeSubnet:
        return RangeSubnet(
            self.session,
            subnet_id=subnet_id,
            owner_id=ipam_id,
            network=ipaddress.ip_network(cidr),
            pools=pools,
            ranges=RANGES,
            ledger=TableLedger(ipam_id),
        )

    def _write_pools(self, ipam_subnet_id: str, request_pools) -> list[PoolBounds]:  # type: ignore[no-untyped-def]
        self.session.execute(delete(IpamAllocationPool).where(IpamAllocationPool.ipam_subnet_id == ipam_subnet_id))
        rows = [
            {
                "id": new_id(),
                "ipam_subnet_id": ipam_subnet_id,
                "first_ip": str(a),
                "last_ip": str(b),
                "first_key": to_key(a),
                "last_key": to_key(b),
            }
            for a, b in request_pools
        ]
        if rows:
            self.session.execute(insert(IpamAllocationPool), rows)
        return [PoolBounds(r["id"], int(r["first_key"], 16), int(r["last_key"], 16)) for r in rows]

    def allocate_subnet(self, request: SpecificSubnetRequest) -> RangeSubnet:
        row = IpamSubnet(
            id=new_id(), subnet_id=request.subnet_id, cidr=str(request.cidr), ip_version=request.cidr.version
        )
        self.session.add(row)
        self.session.flush()
        pools = self._write_pools(row.id, request.allocation_pools)
        RANGES.rebuild(self.session, row.id, pools, [])
        return self._subnet(row.subnet_id, row.id, row.cidr, pools)

    def get_subnet(self, subnet_id: str) -> RangeSubnet:
        # The hot path of every allocation: the subnet and its pools in one round trip, no ORM objects.
        rows = self.session.connection().execute(_SUBNET_WITH_POOLS, {"subnet_id": subnet_id}).all()
        if not rows:
            raise IpamSubnetNotFound(subnet_id, self.name)
        pools = [PoolBounds(pid, int(a, 16), int(b, 16)) for _, _, pid, a, b in rows if pid is not None]
        return self._subnet(subnet_id, rows[0][0], rows[0][1], pools)

    def update_subnet(self, request: SpecificSubnetRequest) -> RangeSubnet:
        row = self._row(request.subnet_id)
        if row is None:
            raise IpamSubnetNotFound(request.subnet_id, self.name)
        pools = self._write_pools(row.id, request.allocation_pools)
        RANGES.rebuild(self.session, row.id, pools, self._allocated_values(row.id))
        return self._subnet(row.subnet_id, row.id, row.cidr, pools)

    def _allocated_values(self, ipam_subnet_id: str) -> list[int]:
        addrs = self.session.scalars(
            select(IpamAllocation.ip_address).where(IpamAllocation.ipam_subnet_id == ipam_subnet_id)
        )
        return [int(ipaddress.ip_address(a)) for a in addrs]

    def remove_subnet(self, subnet_id: str) -> None:
        row = self._row(subnet_id)
        if row is not None:
            self._delete_subnet_rows(row.id)

    def _delete_subnet_rows(self, ipam_subnet_id: str) -> None:
        # Explicit deletes rather than ON DELETE CASCADE: SQLite only cascades with foreign keys on.
        for model in (IpamAllocation, IpamAvailabilityRange, IpamAllocationPool):
            self.session.execute(delete(model).where(model.ipam_subnet_id == ipam_subnet_id))
        self.session.execute(delete(IpamSubnet).where(IpamSubnet.id == ipam_subnet_id))

    # --- migration support ---------------------------------------------------------------------

    def subnet_ids(self, after: str | None, limit: int) -> list[str]:
        stmt = select(IpamSubnet.subnet_id).order_by(IpamSubnet.subnet_id).limit(limit)
        if after is not None:
            stmt = stmt.where(IpamSubnet.subnet_id > after)
        return list(self.session.scalars(stmt))

    def dump_subnet(self, subnet_id: str) -> SubnetState | None:
        row = self._row(subnet_id)
        return None if row is None else self._state(row)

    def _state(self, row: IpamSubnet) -> SubnetState:
        pools = self.session.execute(
            select(IpamAllocationPool.first_ip, IpamAllocationPool.last_ip)
            .where(IpamAllocationPool.ipam_subnet_id == row.id)
            .order_by(IpamAllocationPool.first_key)
        ).all()
        addrs = self.session.scalars(
            select(IpamAllocation.ip_address).where(IpamAllocation.ipam_subnet_id == row.id)
        ).all()
        return SubnetState(row.subnet_id, row.cidr, [(a, b) for a, b in pools], netaddr.IPSet(addrs))

    def import_subnet(self, state: SubnetState, core_allocations: list[str]) -> None:
        existing = self._row(state.subnet_id)
        if existing is not None:
            self._delete_subnet_rows(existing.id)
        net = ipaddress.ip_network(state.cidr)
        row_id = new_id()
        self.session.execute(
            insert(IpamSubnet),
            [{"id": row_id, "subnet_id": state.subnet_id, "cidr": state.cidr, "ip_version": net.version}],
        )
        pools = self._write_pools(row_id, [(ipaddress.ip_address(a), ipaddress.ip_address(b)) for a, b in state.pools])
        if core_allocations:
            TableLedger(row_id).record(self.session, core_allocations)
        RANGES.rebuild(self.session, row_id, pools, [int(ipaddress.ip_address(a)) for a in core_allocations])

    def counts(self) -> dict[str, int]:
        def count(model: type) -> int:
            return self.session.scalar(select(func.count()).select_from(model)) or 0

        return {
            "subnets": count(IpamSubnet),
            "pools": count(IpamAllocationPool),
            "allocations": count(IpamAllocation),
            "free_ranges": count(IpamAvailabilityRange),
        }

    def purge(self) -> dict[str, int]:
        deleted = {}
        for key, model in (
            ("allocations", IpamAllocation),
            ("free_ranges", IpamAvailabilityRange),
            ("pools", IpamAllocationPool),
            ("subnets", IpamSubnet),
        ):
            deleted[key] = self.session.execute(delete(model)).rowcount
        return deleted

    # --- free space ----------------------------------------------------------------------------

    def free_space(self, subnet_ids: Sequence[str]) -> dict[str, FreeSpace]:
        owners: dict[str, str] = {}
        ids = list(subnet_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            stmt = select(IpamSubnet.id, IpamSubnet.subnet_id).where(IpamSubnet.subnet_id.in_(chunk))
            owners.update((owner, sid) for owner, sid in self.session.execute(stmt))
        stored = RANGES.ranges_by_owner(self.session, list(owners))
        return {sid: FreeRanges(stored.get(owner, [])) for owner, sid in owners.items()}

    def rebuild_free_space(self, subnet_id: str, allocated: Collection[str]) -> None:
        row = self._row(subnet_id)
        if row is None:
            raise IpamSubnetNotFound(subnet_id, self.name)
        pools = [
            PoolBounds(pid, int(a, 16), int(b, 16))
            for pid, a, b in self.session.execute(
                select(IpamAllocationPool.id, IpamAllocationPool.first_key, IpamAllocationPool.last_key).where(
                    IpamAllocationPool.ipam_subnet_id == row.id
                )
            )
        ]
        values = {int(ipaddress.ip_address(a)) for a in allocated}
        values.update(self._allocated_values(row.id))  # never free what this backend records as held
        RANGES.rebuild(self.session, row.id, pools, values)
