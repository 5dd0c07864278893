"""The IPAM state: which backend is active, the fence, the change journal, migration records.

The fence is held by a migration (its id) or by a free-space repair (an id of its own, ``repair-...``).

This is the only module that reads or writes ``ipam_state``, ``ipam_gate``, ``ipam_migrations`` and
``ipam_changes``; servers, the migration and the CLI all go through it.

The gate. Every address change writes one random slot of ``ipam_gate`` and reads the state from that
slot in the same statement (``enter``); every change of state (fence up or down, journal on or off,
switch of backend) writes all slots (``_transition``). On one database server the state change
therefore waits for the address changes in flight (they hold a slot's row lock) and every later one
sees the new state. On a multi-master cluster (Galera), where locks and reads are local to a node, the
two writes conflict at certification instead: whichever commits second fails and is retried, and the
retry sees the new state. With many slots, concurrent address changes rarely share one. On SQLite a
writing transaction holds the whole database, so there an address change only reads its slot.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from pipam.db.base import utcnow
from pipam.db.engine import one_writer
from pipam.db.models import IpamChange, IpamGate, IpamMigration, IpamState
from pipam.errors import DatabaseNotReady, IpamMigrationInProgress, MigrationError

GATE_SLOTS = 128
LEASE_SECONDS = 30  # a migration whose owner has not renewed its lease for this long is interrupted

_rng = random.Random()


@dataclass(frozen=True)
class IpamStatus:
    active: str
    shadow: str | None  # a migration is copying into this backend: address changes are journalled
    fence: str | None  # id of the migration holding the fence
    fence_reason: str | None = None


# --- reading -----------------------------------------------------------------------------------


def read(session: Session) -> IpamStatus:
    """The state as a plain read (status, health checks)."""
    row = session.execute(
        select(
            IpamState.active_backend,
            IpamState.shadow_backend,
            IpamState.fence_migration_id,
            IpamState.fence_reason,
        ).where(IpamState.id == 1)
    ).first()
    if row is None:
        raise DatabaseNotReady()
    return IpamStatus(*row)


_GATE_COLUMNS = (IpamGate.active_backend, IpamGate.shadow_backend, IpamGate.fence_migration_id)
# Built once: every address change runs them, and building them per call cost more than running them.
_TOUCH = update(IpamGate).where(IpamGate.slot == bindparam("gate_slot")).values(touches=IpamGate.touches + 1)
_TOUCH_RETURNING = _TOUCH.returning(*_GATE_COLUMNS)
_READ_SLOT = select(*_GATE_COLUMNS).where(IpamGate.slot == bindparam("gate_slot"))


def enter(session: Session) -> IpamStatus:
    """For a transaction that changes addresses: write a gate slot and read the state it carries.

    Raises IpamMigrationInProgress while the fence is up. See the module's docstring for why a write; on
    SQLite (``one_writer``) the transaction already holds the whole database, and the slot is only read.
    """
    slot = _rng.randrange(GATE_SLOTS)
    conn = session.connection()
    if one_writer(conn):  # no write to wait for or to conflict with: a read of the slot is as good
        row = conn.execute(_READ_SLOT, {"gate_slot": slot}).first()
    elif conn.dialect.update_returning:
        row = conn.execute(_TOUCH_RETURNING, {"gate_slot": slot}).first()
    else:  # MariaDB: the row is ours now, so this read is current
        conn.execute(_TOUCH, {"gate_slot": slot})
        row = conn.execute(_READ_SLOT, {"gate_slot": slot}).first()
    if row is None:
        raise DatabaseNotReady()
    status = IpamStatus(row[0], row[1], row[2])
    if status.fence is not None:
        raise IpamMigrationInProgress(
            f"{fence_holder(status.fence)} is in progress; address changes resume when it ends."
        )
    return status


# A repair (``pipam ipam repair``) holds the fence under an id of its own: it has no migration record.
REPAIR_PREFIX = "repair-"


def new_repair_id() -> str:
    return f"{REPAIR_PREFIX}{uuid.uuid4().hex[:16]}"


def is_repair(fence_id: str) -> bool:
    return fence_id.startswith(REPAIR_PREFIX)


def fence_holder(fence_id: str) -> str:
    """Who holds the fence, as messages name it."""
    return f"IPAM backend repair {fence_id}" if is_repair(fence_id) else f"IPAM backend migration {fence_id}"


# --- changing state -----------------------------------------------------------------------------


def recorded(session: Session) -> bool:
    return session.scalar(select(IpamState.id).where(IpamState.id == 1)) is not None


def initialise(session: Session, backend: str) -> bool:
    """Record ``backend`` as the active one of a new database; False when it already has a state."""
    if recorded(session):
        if session.scalar(select(func.count()).select_from(IpamGate)) == 0:  # upgraded from before the gate
            _fill_gate(session, read(session))
        return False
    session.add(IpamState(id=1, active_backend=backend, updated_at=utcnow()))
    session.flush()
    _fill_gate(session, IpamStatus(backend, None, None))
    return True


def _fill_gate(session: Session, status: IpamStatus) -> None:
    session.execute(
        insert(IpamGate),
        [
            {
                "slot": i,
                "touches": 0,
                "active_backend": status.active,
                "shadow_backend": status.shadow,
                "fence_migration_id": status.fence,
            }
            for i in range(GATE_SLOTS)
        ],
    )


def _transition(session: Session, expect_fence: Any = ..., **values: Any) -> bool:
    """Change the state row and every gate slot in one transaction; False if ``expect_fence`` differs."""
    stmt = update(IpamState).where(IpamState.id == 1)
    if expect_fence is not ...:
        stmt = stmt.where(
            IpamState.fence_migration_id.is_(None)
            if expect_fence is None
            else IpamState.fence_migration_id == expect_fence
        )
    if session.execute(stmt.values(**values, updated_at=utcnow())).rowcount != 1:
        return False
    gate = {k: v for k, v in values.items() if k in ("active_backend", "shadow_backend", "fence_migration_id")}
    session.execute(update(IpamGate).values(touches=IpamGate.touches + 1, **gate))
    return True


def raise_fence(session: Session, migration_id: str, reason: str) -> None:
    """Address changes stop: in-flight ones finish first (they hold gate slots), later ones get 503."""
    if not _transition(session, expect_fence=None, fence_migration_id=migration_id, fence_reason=reason):
        current = read(session)
        if current.fence != migration_id:
            raise MigrationError(f"{fence_holder(str(current.fence))} holds the fence; see 'pipam ipam status'")


def take_over_fence(session: Session, old: str, new: str, reason: str) -> None:
    """Hand a fence left up (by a repair that was killed) to ``new`` without lowering it in between."""
    if not _transition(session, expect_fence=old, fence_migration_id=new, fence_reason=reason):
        raise MigrationError(f"{fence_holder(old)} no longer holds the fence; see 'pipam ipam status'")


def lower_fence(session: Session, migration_id: str) -> None:
    _transition(session, expect_fence=migration_id, fence_migration_id=None, fence_reason=None)


def start_journal(session: Session, target: str) -> None:
    """From this commit on, every address change is journalled for the migration into ``target``."""
    _transition(session, shadow_backend=target)


def stop_journal(session: Session) -> None:
    _transition(session, shadow_backend=None)
    session.execute(delete(IpamChange))


def switch(session: Session, migration_id: str, target: str) -> None:
    """Make ``target`` the active backend, stop journalling and lift the fence, in one transition."""
    if not _transition(
        session,
        expect_fence=migration_id,
        active_backend=target,
        shadow_backend=None,
        fence_migration_id=None,
        fence_reason=None,
    ):
        raise MigrationError(f"migration {migration_id} does not hold the fence; the switch is refused")
    session.execute(delete(IpamChange))


# --- the change journal ------------------------------------------------------------------------


def journal(session: Session, subnet_id: str, addresses: list[str] | None) -> None:
    """Record that these addresses of a subnet (None: the subnet itself) changed during a copy."""
    rows = [{"subnet_id": subnet_id, "ip_address": a} for a in addresses] if addresses else []
    if addresses is None:
        rows = [{"subnet_id": subnet_id, "ip_address": None}]
    if rows:
        session.connection().execute(insert(IpamChange), rows)


def journal_batch(session: Session, limit: int) -> list[tuple[int, str, str | None]]:
    """The oldest journal entries (id, subnet_id, address or None)."""
    return [
        (i, s, a)
        for i, s, a in session.execute(
            select(IpamChange.id, IpamChange.subnet_id, IpamChange.ip_address).order_by(IpamChange.id).limit(limit)
        )
    ]


def journal_pending(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(IpamChange)) or 0


def journal_forget(session: Session, ids: list[int]) -> None:
    for start in range(0, len(ids), 1000):
        session.execute(delete(IpamChange).where(IpamChange.id.in_(ids[start : start + 1000])))


# --- migration records and their owner's lease -------------------------------------------------


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def database_now(session: Session) -> datetime:
    """The database server's clock: leases are compared on one clock, whatever host runs a migration."""
    value = session.scalar(select(func.current_timestamp()))
    if isinstance(value, str):  # SQLite answers text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=None)


def running(session: Session, lock: bool = False) -> IpamMigration | None:
    stmt = select(IpamMigration).where(IpamMigration.status == "running").order_by(IpamMigration.started_at.desc())
    return session.scalar(stmt.with_for_update() if lock else stmt)


def last(session: Session) -> IpamMigration | None:
    return session.scalar(select(IpamMigration).order_by(IpamMigration.started_at.desc()).limit(1))


def get(session: Session, migration_id: str) -> IpamMigration:
    mig = session.get(IpamMigration, migration_id)
    if mig is None:
        raise MigrationError(f"migration {migration_id} is not recorded")
    return mig


def lease_alive(session: Session, mig: IpamMigration) -> bool:
    if mig.heartbeat_at is None:
        return False
    return database_now(session) - mig.heartbeat_at < timedelta(seconds=LEASE_SECONDS)


def describe_owner(session: Session, mig: IpamMigration) -> str:
    age = (
        "never"
        if mig.heartbeat_at is None
        else f"{(database_now(session) - mig.heartbeat_at).total_seconds():.0f} s ago"
    )
    return f"owner {mig.owner or 'unknown'}, started {mig.started_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat {age}"


def start_migration(session: Session, source: str, target: str, owner: str, options: dict[str, Any]) -> str:
    mig = IpamMigration(
        source=source,
        target=target,
        status="running",
        phase="prune",
        options=options,
        owner=owner,
        started_at=utcnow(),
    )
    session.add(mig)
    session.flush()
    heartbeat(session, mig.id, owner)
    return mig.id


def take_over(session: Session, mig: IpamMigration, owner: str) -> None:
    """Resume an interrupted migration: this process becomes its owner."""
    mig.owner = owner
    session.flush()
    heartbeat(session, mig.id, owner)


def heartbeat(session: Session, migration_id: str, owner: str) -> None:
    """Renew the lease; fails when another process has taken the migration over."""
    done = session.execute(
        update(IpamMigration)
        .where(IpamMigration.id == migration_id, IpamMigration.owner == owner, IpamMigration.status == "running")
        .values(heartbeat_at=func.current_timestamp())
    ).rowcount
    if done != 1:
        raise MigrationError(f"migration {migration_id} is no longer owned by this process ({owner}); stopping")


def set_progress(session: Session, migration_id: str, **values: Any) -> None:
    session.execute(update(IpamMigration).where(IpamMigration.id == migration_id).values(**values))


def finish(session: Session, migration_id: str, status: str, report: dict[str, Any], error: str | None = None) -> None:
    set_progress(session, migration_id, status=status, finished_at=utcnow(), report=report, error=error)
