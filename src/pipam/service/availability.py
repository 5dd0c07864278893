"""Network IP availability: total addresses in the pools and used addresses, per subnet and network."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from pipam.db.models import IPAllocation, Network, Subnet
from pipam.service.common import ADMIN, Caller, get_or_404
from pipam.service.database import UnitOfWork


def _subnet_entries(uow: UnitOfWork, network_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    used = dict(
        uow.session.execute(
            select(IPAllocation.subnet_id, func.count())
            .where(IPAllocation.network_id.in_(network_ids))
            .group_by(IPAllocation.subnet_id)
        ).all()
    )
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in network_ids}
    subnets = uow.session.scalars(select(Subnet).where(Subnet.network_id.in_(network_ids)).order_by(Subnet.id))
    for s in subnets:
        total = sum(int(p.last_key, 16) - int(p.first_key, 16) + 1 for p in s.allocation_pools)
        out[s.network_id].append(
            {
                "subnet_id": s.id,
                "subnet_name": s.name,
                "cidr": s.cidr,
                "ip_version": s.ip_version,
                "total_ips": total,
                "used_ips": used.get(s.id, 0),
            }
        )
    return out


def _network_entry(net: Network, subnets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "network_id": net.id,
        "network_name": net.name,
        "project_id": net.project_id,
        "tenant_id": net.project_id,
        "subnet_ip_availability": subnets,
        "total_ips": sum(s["total_ips"] for s in subnets),
        "used_ips": sum(s["used_ips"] for s in subnets),
    }


def show(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN) -> dict[str, Any]:
    net = get_or_404(uow.session, Network, network_id, "Network", caller, shared_attr="shared")
    return _network_entry(net, _subnet_entries(uow, [net.id])[net.id])


def for_networks(uow: UnitOfWork, nets: list[Network]) -> list[dict[str, Any]]:
    entries = _subnet_entries(uow, [n.id for n in nets])
    return [_network_entry(n, entries[n.id]) for n in nets]
