"""``pipam ipam verify``: a backend's state against the core tables, at any time.

Two checks per subnet, kept apart: what the backend *holds* (its subnet, pools and allocations, by
``compare_subnet``) and what it would *hand out* (its free space, by ``compare_free_space``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import netaddr
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipam.db.models import Subnet
from pipam.ipam.interface import FreeSpace, IpamDriver, SubnetState
from pipam.migration.compare import Comparison, compare_subnet
from pipam.migration.core_state import CoreSubnet, core_batches, load_subnets
from pipam.migration.free_space import check_of, compare_free_space, read_free_space
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
    result.free_space["check"] = check_of(driver)
    foreign = 0
    for batch in core_batches(session, batch_size):
        cores = [c for c in batch if not (c.state.subnet_id in pending and pending[c.state.subnet_id] is None)]
        free = read_free_space(driver, [c.state.subnet_id for c in cores])
        for core in cores:
            foreign += _verify_subnet(result, driver, core, free, pending.get(core.state.subnet_id))
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
    result.free_space["check"] = check_of(driver)
    ids = sorted(subnet_ids)
    cores = {c.state.subnet_id: c for c in load_subnets(session, ids)}
    free = read_free_space(driver, [sid for sid in ids if sid in cores])
    for sid in ids:
        core = cores.get(sid)
        if core is not None:
            _verify_subnet(result, driver, core, free)
            continue
        stale = driver.dump_subnet(sid)
        if stale is not None:
            compare_subnet(result, None, stale)
    return result


def _verify_subnet(
    result: Comparison,
    driver: IpamDriver,
    core: CoreSubnet,
    free: Mapping[str, FreeSpace],
    pending: netaddr.IPSet | None = None,
) -> int:
    """Both checks of one core subnet; returns how many addresses others hold in a shared backend."""
    sid = core.state.subnet_id
    held = driver.dump_subnet(sid)
    foreign = _drop_foreign(driver, core.state, held)
    compare_subnet(result, core.state, held, pending)
    if held is not None and result.free_space["check"] != "none":
        compare_free_space(result, held, core.values(), free.get(sid), pending, driver.shared)
    return foreign


def _drop_foreign(driver: IpamDriver, core: SubnetState, held: SubnetState | None) -> int:
    """Addresses other systems hold in a shared IPAM are theirs, not differences: left out.

    A driver that can tell what Pipam itself created there (``created_by_pipam(subnet_id)``, after
    ``dump_subnet``) keeps those in: one the core does not hold is a leftover (an undo that could not
    reach the IPAM), listed as extra."""
    if not driver.shared or held is None:
        return 0
    others = held.allocations - core.allocations
    own = getattr(driver, "created_by_pipam", None)
    if own is not None:
        others -= own(core.subnet_id)
    held.allocations -= others
    return int(others.size)
