"""The truth: what the core tables say each subnet holds, read in batches of subnets."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import netaddr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipam.db.models import IPAllocation, IPAllocationPool, Subnet
from pipam.ipam.interface import SubnetState


@dataclass
class CoreSubnet:
    state: SubnetState
    addresses: list[str]  # the allocated addresses, as the import wants them
    keys: list[str]  # the same as ordering keys (pipam.ipam.addr.to_key)

    def values(self) -> list[int]:
        """The allocated addresses as integers, in order (the free-space check sweeps them)."""
        return sorted(int(k, 16) for k in self.keys)


def core_batches(
    session: Session, batch_size: int, after: str | None = None, max_addresses: int | None = None
) -> Iterator[list[CoreSubnet]]:
    """Subnets in id order, ``batch_size`` at a time (fewer when they hold more than ``max_addresses``
    addresses between them: one transaction stays short), each with its pools and allocations."""
    while True:
        stmt = select(Subnet.id, Subnet.cidr).order_by(Subnet.id).limit(batch_size)
        if after is not None:
            stmt = stmt.where(Subnet.id > after)
        rows = session.execute(stmt).all()
        if not rows:
            return
        if max_addresses is not None and len(rows) > 1:
            rows = _within(session, rows, max_addresses)
        yield load_core(session, rows)
        after = rows[-1][0]


def _within(session: Session, rows: list[Any], max_addresses: int) -> list[Any]:
    """The first rows whose subnets hold at most ``max_addresses`` addresses together (at least one)."""
    counts = dict(
        session.execute(
            select(IPAllocation.subnet_id, func.count())
            .where(IPAllocation.subnet_id.in_([r[0] for r in rows]))
            .group_by(IPAllocation.subnet_id)
        ).all()
    )
    total, keep = 0, 0
    for row in rows:
        total += counts.get(row[0], 0)
        if keep and total > max_addresses:
            break
        keep += 1
    return rows[:keep]


def load_subnets(session: Session, subnet_ids: list[str]) -> list[CoreSubnet]:
    """The named subnets that the core still has."""
    rows: list[tuple[str, str]] = []
    for start in range(0, len(subnet_ids), 500):
        chunk = subnet_ids[start : start + 500]
        rows += [
            (sid, cidr) for sid, cidr in session.execute(select(Subnet.id, Subnet.cidr).where(Subnet.id.in_(chunk)))
        ]
    return load_core(session, rows) if rows else []


def load_core(session: Session, rows: list[tuple[str, str]]) -> list[CoreSubnet]:
    ids = [sid for sid, _ in rows]
    pools: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for sid, first, last in session.execute(
        select(IPAllocationPool.subnet_id, IPAllocationPool.first_ip, IPAllocationPool.last_ip)
        .where(IPAllocationPool.subnet_id.in_(ids))
        .order_by(IPAllocationPool.subnet_id, IPAllocationPool.first_key)
    ):
        pools[sid].append((first, last))
    addrs: dict[str, list[str]] = defaultdict(list)
    keys: dict[str, list[str]] = defaultdict(list)
    for sid, ip, key in session.execute(
        select(IPAllocation.subnet_id, IPAllocation.ip_address, IPAllocation.ip_key).where(
            IPAllocation.subnet_id.in_(ids)
        )
    ):
        addrs[sid].append(ip)
        keys[sid].append(key)
    return [
        CoreSubnet(SubnetState(sid, cidr, pools[sid], netaddr.IPSet(addrs[sid])), addrs[sid], keys[sid])
        for sid, cidr in rows
    ]


def core_counts(session: Session) -> dict[str, int]:
    def count(model: type) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    return {"subnets": count(Subnet), "pools": count(IPAllocationPool), "allocations": count(IPAllocation)}


@dataclass
class Inconsistency:
    subnet_id: str
    problem: str


def check_core(session: Session, batch_size: int = 500) -> Iterator[Inconsistency]:
    """Every allocation inside its subnet; no address held twice within a network."""
    twice = session.execute(
        select(IPAllocation.network_id, IPAllocation.ip_address, func.count())
        .group_by(IPAllocation.network_id, IPAllocation.ip_address)
        .having(func.count() > 1)
    )
    for network_id, ip, count in twice:
        yield Inconsistency("", f"address {ip} is held {count} times on network {network_id}")
    for batch in core_batches(session, batch_size):
        for core in batch:
            net = ipaddress.ip_network(core.state.cidr)
            for ip in core.addresses:
                addr = ipaddress.ip_address(ip)
                if addr.version != net.version or addr not in net:
                    yield Inconsistency(core.state.subnet_id, f"allocation {ip} is outside the subnet {net}")
