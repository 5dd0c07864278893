"""The legacy backend: its allocations are the core table itself, its only own state the free ranges.

Deprecated: kept so that existing deployments run unchanged and so that a migration can be reverted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from typing import ClassVar

import netaddr
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from pipam.db.models import IPAllocation, IPAllocationPool, IPAvailabilityRange, Subnet
from pipam.errors import IpamSubnetNotFound
from pipam.ipam.addr import from_key
from pipam.ipam.free_ranges import PoolBounds, RangeStore, subtract
from pipam.ipam.interface import (
    DriverContext,
    FreeRanges,
    FreeSpace,
    FreeSpaceCheck,
    SpecificSubnetRequest,
    SubnetState,
)
from pipam.ipam.range_subnet import RangeSubnet
from pipam.ipam.state_sets import ipset_of_ranges

RANGES = RangeStore(IPAvailabilityRange.__table__, "subnet_id")  # type: ignore[arg-type]


class CoreLedger:
    """Allocations live in the core ``ipallocations`` table, which the service writes itself."""

    def __init__(self, subnet_id: str) -> None:
        self.subnet_id = subnet_id

    def holds(self, session: Session, address: str) -> bool:
        return session.get(IPAllocation, (address, self.subnet_id)) is not None

    def record(self, session: Session, addresses: list[str]) -> None:
        return None  # the service inserts the core row; its primary key is the backstop

    def forget(self, session: Session, address: str) -> bool:
        # The engine deleted the core row and calls us only when it did (an ordering rule of the
        # driver interface); the migration's reconcile calls us for addresses the core no longer holds.
        return True


def core_pools(session: Session, subnet_id: str) -> list[PoolBounds]:
    rows = session.execute(
        select(IPAllocationPool.id, IPAllocationPool.first_key, IPAllocationPool.last_key).where(
            IPAllocationPool.subnet_id == subnet_id
        )
    )
    return [PoolBounds(pid, int(a, 16), int(b, 16)) for pid, a, b in rows]


def core_allocated_values(session: Session, subnet_id: str) -> list[int]:
    keys = session.scalars(select(IPAllocation.ip_key).where(IPAllocation.subnet_id == subnet_id))
    return [int(k, 16) for k in keys]


_SUBNET_WITH_POOLS = (
    select(Subnet.cidr, IPAllocationPool.id, IPAllocationPool.first_key, IPAllocationPool.last_key)
    .outerjoin(IPAllocationPool, IPAllocationPool.subnet_id == Subnet.id)
    .where(Subnet.id == bindparam("subnet_id"))
)


class BuiltinDriver:
    name: ClassVar[str] = "builtin"
    deprecated: ClassVar[bool] = True
    shared: ClassVar[bool] = False
    settings_model: ClassVar[None] = None
    schema: ClassVar[None] = None  # its free ranges are a core table
    free_space_check: ClassVar[FreeSpaceCheck] = "ranges"
    in_database: ClassVar[bool] = True  # every call goes through the request's session
    automatic_bulk: ClassVar[bool] = True  # RangeSubnet answers AutomaticBulkRequest

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        self.session = context.session

    def _subnet(self, subnet_id: str) -> RangeSubnet:
        # The hot path of every allocation: the subnet and its pools in one round trip, no ORM objects.
        rows = self.session.connection().execute(_SUBNET_WITH_POOLS, {"subnet_id": subnet_id}).all()
        if not rows:
            raise IpamSubnetNotFound(subnet_id, self.name)
        return RangeSubnet(
            self.session,
            subnet_id=subnet_id,
            owner_id=subnet_id,
            network=ipaddress.ip_network(rows[0][0]),
            pools=[PoolBounds(pid, int(a, 16), int(b, 16)) for _, pid, a, b in rows if pid is not None],
            ranges=RANGES,
            ledger=CoreLedger(subnet_id),
        )

    def allocate_subnet(self, request: SpecificSubnetRequest) -> RangeSubnet:
        # The service has written the core subnet and its pools in this transaction already.
        RANGES.rebuild(self.session, request.subnet_id, core_pools(self.session, request.subnet_id), [])
        return self._subnet(request.subnet_id)

    def get_subnet(self, subnet_id: str) -> RangeSubnet:
        return self._subnet(subnet_id)

    def update_subnet(self, request: SpecificSubnetRequest) -> RangeSubnet:
        sid = request.subnet_id
        RANGES.rebuild(self.session, sid, core_pools(self.session, sid), core_allocated_values(self.session, sid))
        return self._subnet(sid)

    def remove_subnet(self, subnet_id: str) -> None:
        RANGES.remove_owner(self.session, subnet_id)

    # --- migration support ---------------------------------------------------------------------

    def subnet_ids(self, after: str | None, limit: int) -> list[str]:
        """Subnets with free-range rows (a subnet whose pools are all allocated has none: see dump_subnet)."""
        stmt = select(IPAvailabilityRange.subnet_id).distinct().order_by(IPAvailabilityRange.subnet_id).limit(limit)
        if after is not None:
            stmt = stmt.where(IPAvailabilityRange.subnet_id > after)
        return list(self.session.scalars(stmt))

    def dump_subnet(self, subnet_id: str) -> SubnetState | None:
        subnet = self.session.get(Subnet, subnet_id)
        free = RANGES.ranges(self.session, subnet_id)
        if subnet is None:
            # Ranges of a subnet the core no longer has: stale, shown with no pools.
            return SubnetState(subnet_id, "", [], netaddr.IPSet()) if free else None
        version = subnet.ip_version
        pools = core_pools(self.session, subnet_id)
        # Pools minus free ranges, as integer intervals: small even for a /64 with many holes.
        taken = ipset_of_ranges(subtract([(p.first, p.last) for p in pools], free), version)
        outside = netaddr.IPSet(
            ip
            for ip, key in self.session.execute(
                select(IPAllocation.ip_address, IPAllocation.ip_key).where(IPAllocation.subnet_id == subnet_id)
            )
            if not any(int(key, 16) in p for p in pools)
        )
        return SubnetState(
            subnet_id,
            subnet.cidr,
            [(from_key(f"{p.first:032x}", version), from_key(f"{p.last:032x}", version)) for p in pools],
            taken | outside,
        )

    def import_subnet(self, state: SubnetState, core_allocations: list[str]) -> None:
        values = [int(ipaddress.ip_address(a)) for a in core_allocations]
        RANGES.rebuild(self.session, state.subnet_id, core_pools(self.session, state.subnet_id), values)

    def counts(self) -> dict[str, int]:
        subnets = self.session.scalar(select(func.count(func.distinct(IPAvailabilityRange.subnet_id))))
        ranges = self.session.scalar(select(func.count()).select_from(IPAvailabilityRange))
        return {"subnets": subnets or 0, "free_ranges": ranges or 0}

    def purge(self) -> dict[str, int]:
        deleted = self.session.execute(delete(IPAvailabilityRange)).rowcount
        return {"free_ranges": deleted}

    # --- free space ----------------------------------------------------------------------------

    def free_space(self, subnet_ids: Sequence[str]) -> dict[str, FreeSpace]:
        # Every core subnet is held (the core tables are this backend's own): one with no rows has nothing free.
        stored = RANGES.ranges_by_owner(self.session, subnet_ids)
        return {sid: FreeRanges(stored.get(sid, [])) for sid in subnet_ids}

    def rebuild_free_space(self, subnet_id: str, allocated: Collection[str]) -> None:
        # The ledger is the core table itself, so "what the backend records" is already in ``allocated``;
        # it is read again here so that a caller passing less cannot free a held address.
        values = {int(ipaddress.ip_address(a)) for a in allocated}
        values.update(core_allocated_values(self.session, subnet_id))
        RANGES.rebuild(self.session, subnet_id, core_pools(self.session, subnet_id), values)
