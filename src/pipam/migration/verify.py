"""``pipam ipam verify``: a backend's state against the core tables, at any time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipam.db.models import Subnet
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.migration.compare import Comparison, compare_subnet
from pipam.migration.core_state import core_batches
from pipam.migration.progress import Progress, Silent


def verify(
    session: Session, driver_cls: type[IpamDriver], batch_size: int = 500, progress: Progress | None = None
) -> Comparison:
    """Every core subnet against what the backend holds for it, then the backend's subnets the core lacks."""
    progress = progress or Silent()
    driver = driver_cls(DriverContext(session))
    result = Comparison()
    foreign = 0
    for batch in core_batches(session, batch_size):
        for core in batch:
            held = driver.dump_subnet(core.state.subnet_id)
            if driver_cls.shared and held is not None:
                # Addresses other systems hold in a shared IPAM are theirs, not differences.
                others = held.allocations - core.state.allocations
                foreign += others.size
                held.allocations -= others
            compare_subnet(result, core.state, held)
        progress.advance(len(batch))
    after = None
    while True:
        ids = driver.subnet_ids(after, batch_size)
        if not ids:
            break
        known = set(session.scalars(select(Subnet.id).where(Subnet.id.in_(ids))))
        for sid in ids:
            if sid not in known:
                stale = driver.dump_subnet(sid)
                if stale is not None:
                    compare_subnet(result, None, stale)
        after = ids[-1]
    if foreign:
        result.backend["foreign_allocations"] = foreign
    return result
