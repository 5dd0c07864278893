"""Network IP availability: total addresses in the pools and used addresses, per subnet and network."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from pipam.db.models import IPAllocation, IPAllocationPool, Network, Subnet
from pipam.errors import NetworkNotFound
from pipam.service.attributes import Attr, Int, ListOf, Record, Resource, Str, Uuid
from pipam.service.database import UnitOfWork
from pipam.service.listing import ListQuery, Page, list_items
from pipam.service.policy import ADMIN, Caller, get_visible


@dataclass
class SubnetAvailability:
    subnet_id: str
    subnet_name: str
    cidr: str
    ip_version: int
    total_ips: int
    used_ips: int


@dataclass
class NetworkAvailability:
    network_id: str
    network_name: str
    project_id: str
    subnet_ip_availability: list[SubnetAvailability] = field(default_factory=list)

    @property
    def total_ips(self) -> int:
        return sum(s.total_ips for s in self.subnet_ip_availability)

    @property
    def used_ips(self) -> int:
        return sum(s.used_ips for s in self.subnet_ip_availability)


def _versions(values: list[str]) -> list[int]:
    return [int(v) for v in values if v in ("4", "6")]


def _ip_version_filter(values: list[str]) -> Any:
    return Network.id.in_(select(Subnet.network_id).where(Subnet.ip_version.in_(_versions(values))))


SUBNET_ENTRY = Record(
    {
        "subnet_id": Uuid(),
        "subnet_name": Str(),
        "cidr": Str(),
        "ip_version": Int(),
        "total_ips": Int(),
        "used_ips": Int(),
    }
)

DEFINITION = Resource(
    singular="network_ip_availability",
    plural="network_ip_availabilities",
    model=Network,
    not_found=NetworkNotFound,
    shared_column="shared",
    extra_filters={"ip_version": _ip_version_filter},
    attributes=(
        Attr("network_id", Uuid(), filter=True, sort=True, column="id"),
        Attr("network_name", Str(), filter=True, sort=True, column="name"),
        Attr("project_id", Str(), filter=True, sort=True),
        Attr("tenant_id", Str(), filter=True, sort=True, alias_of="project_id"),
        Attr(
            "subnet_ip_availability",
            ListOf(SUBNET_ENTRY),
            read=lambda n: [s.__dict__ for s in n.subnet_ip_availability],
        ),
        Attr("total_ips", Int()),
        Attr("used_ips", Int()),
    ),
)


def _of(uow: UnitOfWork, nets: list[Network], versions: list[int]) -> list[NetworkAvailability]:
    ids = [n.id for n in nets]
    if not ids:
        return []
    used = dict(
        uow.session.execute(
            select(IPAllocation.subnet_id, func.count())
            .where(IPAllocation.network_id.in_(ids))
            .group_by(IPAllocation.subnet_id)
        ).all()
    )
    totals: dict[str, int] = defaultdict(int)
    for sid, first, last in uow.session.execute(
        select(IPAllocationPool.subnet_id, IPAllocationPool.first_key, IPAllocationPool.last_key)
        .join(Subnet, Subnet.id == IPAllocationPool.subnet_id)
        .where(Subnet.network_id.in_(ids))
    ):
        totals[sid] += int(last, 16) - int(first, 16) + 1
    out = {n.id: NetworkAvailability(n.id, n.name, n.project_id) for n in nets}
    stmt = select(Subnet.id, Subnet.name, Subnet.cidr, Subnet.ip_version, Subnet.network_id).where(
        Subnet.network_id.in_(ids)
    )
    if versions:
        stmt = stmt.where(Subnet.ip_version.in_(versions))
    for sid, name, cidr, version, network_id in uow.session.execute(stmt.order_by(Subnet.id)):
        out[network_id].subnet_ip_availability.append(
            SubnetAvailability(sid, name, cidr, version, totals.get(sid, 0), used.get(sid, 0))
        )
    return [out[n.id] for n in nets]


def show(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN) -> NetworkAvailability:
    net = get_visible(uow.session, DEFINITION, network_id, caller)
    return _of(uow, [net], [])[0]


def list_availability(
    uow: UnitOfWork, query: ListQuery, caller: Caller = ADMIN
) -> tuple[list[NetworkAvailability], Page]:
    page = list_items(uow.tx, DEFINITION, query, caller)
    return _of(uow, page.items, _versions(query.filters.get("ip_version", []))), page
