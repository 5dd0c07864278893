"""``pipam ipam verify``: a backend's state against the core tables, at any time."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import netaddr
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipam.db.models import Subnet
from pipam.ipam.interface import IpamDriver
from pipam.migration.compare import Comparison, compare_subnet
from pipam.migration.core_state import core_batches, load_subnets
from pipam.migration.progress import Observer, Silent


def verify(
    session: Session,
    driver: IpamDriver,
    batch_size: int = 500,
    progress: Observer | None = None,
    pending: Mapping[str, netaddr.IPSet | None] | None = None,
) -> Comparison:
    """Every core subnet against what the backend holds for it, then the backend's subnets the core lacks.

    ``pending`` (a migration's journal): subnets whose value is None are skipped, the addresses of the
    others are left out of the comparison; the migration compares them under the fence.
    """
    progress = progress or Silent()
    pending = pending or {}
    result = Comparison()
    foreign = 0
    for batch in core_batches(session, batch_size):
        for core in batch:
            sid = core.state.subnet_id
            if sid in pending and pending[sid] is None:
                continue
            held = driver.dump_subnet(sid)
            if driver.shared and held is not None:
                # Addresses other systems hold in a shared IPAM are theirs, not differences.
                others = held.allocations - core.state.allocations
                foreign += others.size
                held.allocations -= others
            compare_subnet(result, core.state, held, pending.get(sid))
        progress.advance(len(batch))
    after = None
    while True:
        ids = driver.subnet_ids(after, batch_size)
        if not ids:
            break
        known = set(session.scalars(select(Subnet.id).where(Subnet.id.in_(ids))))
        for sid in ids:
            if sid not in known and sid not in pending:
                stale = driver.dump_subnet(sid)
                if stale is not None:
                    compare_subnet(result, None, stale)
        after = ids[-1]
    if foreign:
        result.backend["foreign_allocations"] = foreign
    return result


def verify_subnets(session: Session, driver: IpamDriver, subnet_ids: Collection[str]) -> Comparison:
    """The same comparison for a few subnets (those a migration's journal touched)."""
    result = Comparison()
    cores = {c.state.subnet_id: c for c in load_subnets(session, sorted(subnet_ids))}
    for sid in sorted(subnet_ids):
        held = driver.dump_subnet(sid)
        core = cores.get(sid)
        if driver.shared and held is not None:
            held.allocations -= held.allocations - (core.state.allocations if core else netaddr.IPSet())
        if core is not None or held is not None:
            compare_subnet(result, core.state if core else None, held)
    return result
