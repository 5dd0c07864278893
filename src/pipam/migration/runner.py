"""The migration itself: preflight, fence, copy in checkpointed batches, verify, switch.

Every step leaves the database in a state from which running the same command again finishes the job:
the fence and the checkpoint are rows in the database, each batch is one transaction that also moves
the checkpoint, and importing a subnet replaces whatever the target held for it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import netaddr
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from pipam.db import schema
from pipam.db.base import utcnow
from pipam.db.engine import make_sessionmaker
from pipam.db.models import IpamMigration, IpamState
from pipam.errors import PipamError
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.ipam.registry import load_driver
from pipam.migration.core_state import check_core, core_batches, core_counts
from pipam.migration.progress import Progress, Silent
from pipam.migration.verify import verify


class MigrationError(PipamError):
    status = 409
    type = "MigrationError"

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


@dataclass
class Options:
    target: str
    batch_size: int = 500
    dry_run: bool = False
    on_conflict: str = "fail"  # or "adopt"


@dataclass
class Report:
    outcome: str  # completed, dry-run, nothing-to-do, aborted, failed
    source: str
    target: str
    migration_id: str | None = None
    resumed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    stale_removed: dict[str, int] = field(default_factory=dict)
    conflicts: list[dict[str, str]] = field(default_factory=list)
    verification: dict[str, Any] | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _crash_point(name: str) -> None:
    """Test hooks at named points: PIPAM_TEST_CRASH_AT kills the process (every point must be resumable),
    PIPAM_TEST_PAUSE_AT=name:seconds holds it there (so live tests can watch the fence)."""
    if os.environ.get("PIPAM_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get("PIPAM_TEST_PAUSE_AT", "")
    if pause.partition(":")[0] == name:
        time.sleep(float(pause.partition(":")[2] or 1))


class Migrator:
    def __init__(self, engine: Engine, progress: Progress | None = None) -> None:
        self.engine = engine
        self.sessions = make_sessionmaker(engine)
        self.progress = progress or Silent()

    # --- helpers -------------------------------------------------------------------------------

    def _state(self, session: Session, lock: bool = False) -> IpamState:
        stmt = select(IpamState).where(IpamState.id == 1)
        state = session.scalar(stmt.with_for_update() if lock else stmt)
        if state is None:
            raise MigrationError("the database has no IPAM state; run 'pipam db upgrade' first")
        return state

    def running(self, session: Session) -> IpamMigration | None:
        return session.scalar(
            select(IpamMigration).where(IpamMigration.status == "running").order_by(IpamMigration.started_at.desc())
        )

    # --- abort ---------------------------------------------------------------------------------

    def abort(self) -> Report:
        with self.sessions() as session, session.begin():
            state = self._state(session, lock=True)
            mig = self.running(session)
            if mig is None:
                raise MigrationError("no migration is in progress; nothing to abort")
            if state.fence_migration_id == mig.id:
                state.fence_migration_id = None
                state.fence_reason = None
            mig.status, mig.finished_at = "aborted", utcnow()
            report = Report(
                "aborted",
                mig.source,
                mig.target,
                mig.id,
                message=f"aborted; {state.active_backend!r} stays active. The target's partial data "
                f"is stale: 'pipam ipam cleanup {mig.target}' removes it.",
            )
            mig.report = report.as_dict()
            return report

    # --- preflight -----------------------------------------------------------------------------

    def preflight(self, options: Options) -> tuple[type[IpamDriver], IpamMigration | None, str, dict[str, int]]:
        if options.batch_size < 1:
            raise MigrationError("--batch-size must be at least 1")
        if not schema.is_current(self.engine):
            raise MigrationError(
                f"database schema is at {schema.current_revision(self.engine)}, not "
                f"{schema.head_revision(self.engine)}; run 'pipam db upgrade' first"
            )
        target_cls = load_driver(options.target)
        with self.sessions() as session:
            state = self._state(session)
            mig = self.running(session)
            if mig is not None and mig.target != options.target:
                raise MigrationError(
                    f"migration {mig.id} from {mig.source!r} to {mig.target!r} is in progress; finish it with "
                    f"'pipam ipam migrate --to {mig.target}' or undo it with 'pipam ipam migrate --to "
                    f"{mig.target} --abort'"
                )
            problems = list(check_core(session, options.batch_size))
            if problems:
                lines = [f"{p.subnet_id or '-'}: {p.problem}" for p in problems[:50]]
                raise MigrationError(
                    f"core tables are inconsistent ({len(problems)} problem(s)); fix them before migrating:\n  "
                    + "\n  ".join(lines),
                    {"problems": [p.__dict__ for p in problems[:1000]]},
                )
            return target_cls, mig, state.active_backend, core_counts(session)

    def conflicts(self, target_cls: type[IpamDriver], batch_size: int) -> list[dict[str, str]]:
        """Addresses the core allocates that a shared target already holds for someone else."""
        if not target_cls.shared:
            return []
        found: list[dict[str, str]] = []
        with self.sessions() as session:
            driver = target_cls(DriverContext(session))
            for batch in core_batches(session, batch_size):
                for core in batch:
                    held = driver.dump_subnet(core.state.subnet_id)
                    if held is None:
                        continue
                    for cidr in (held.allocations & core.state.allocations).iter_cidrs():
                        for ip in cidr:
                            found.append(
                                {
                                    "subnet_id": core.state.subnet_id,
                                    "ip_address": str(ip),
                                    "detail": f"{target_cls.name} already holds {ip}",
                                }
                            )
        return found

    # --- run -----------------------------------------------------------------------------------

    def run(self, options: Options) -> Report:
        target_cls, mig, active, counts = self.preflight(options)
        if mig is None and active == options.target:
            return Report(
                "nothing-to-do",
                active,
                options.target,
                counts=counts,
                message=f"{options.target!r} is already the active backend",
            )
        # Decided once, before the fence: on a resumed run the target also holds what we copied ourselves.
        conflicts = self.conflicts(target_cls, options.batch_size) if mig is None else []
        if options.dry_run:
            with self.sessions() as session:
                held = target_cls(DriverContext(session)).counts()
            return Report(
                "dry-run",
                mig.source if mig else active,
                options.target,
                mig.id if mig else None,
                resumed=mig is not None,
                counts=counts,
                conflicts=conflicts,
                stale_removed={} if target_cls.shared else held,
                message=f"would copy {counts['subnets']} subnets and {counts['allocations']} allocations in "
                f"batches of {options.batch_size}"
                + (
                    ""
                    if target_cls.shared or not any(held.values())
                    else f"; the target's stale data ({held}) would be replaced"
                ),
            )
        if conflicts and options.on_conflict == "fail":
            listed = "\n  ".join(f"{c['subnet_id']} {c['ip_address']}: {c['detail']}" for c in conflicts[:50])
            raise MigrationError(
                f"{len(conflicts)} conflict(s): the target already holds addresses the core allocates; "
                f"re-run with --on-conflict adopt to take them over:\n  {listed}",
                {"conflicts": conflicts},
            )
        resumed = mig is not None
        mig_id = mig.id if mig is not None else self._start(active, options)
        report = Report(
            "completed",
            active if mig is None else mig.source,
            options.target,
            mig_id,
            resumed=resumed,
            counts=counts,
            conflicts=conflicts,
        )
        return self._continue(mig_id, target_cls, options, report)

    def _start(self, source: str, options: Options) -> str:
        """Record the migration and raise the fence, in one transaction."""
        with self.sessions() as session, session.begin():
            mig = IpamMigration(
                source=source,
                target=options.target,
                status="running",
                phase="prune",
                options={"batch_size": options.batch_size, "on_conflict": options.on_conflict},
            )
            session.add(mig)
            session.flush()
            # Waits for every address-changing transaction in flight (they hold a shared lock on this
            # row); every later one reads the fence and answers 503.
            fenced = session.execute(
                update(IpamState)
                .where(IpamState.id == 1, IpamState.fence_migration_id.is_(None))
                .values(
                    fence_migration_id=mig.id,
                    fence_reason=f"migrating {source} -> {options.target}",
                    updated_at=utcnow(),
                )
            ).rowcount
            if fenced != 1:
                raise MigrationError("another migration holds the fence; see 'pipam ipam status'")
            mig_id = mig.id
        self.progress.note(f"fence raised: address changes are refused until the migration ends ({mig_id})")
        _crash_point("after-fence")
        return mig_id

    def _set_phase(self, mig_id: str, phase: str) -> None:
        with self.sessions() as session, session.begin():
            session.execute(update(IpamMigration).where(IpamMigration.id == mig_id).values(phase=phase))

    def _continue(self, mig_id: str, target_cls: type[IpamDriver], options: Options, report: Report) -> Report:
        with self.sessions() as session:
            mig = session.get(IpamMigration, mig_id)
            assert mig is not None
            phase, checkpoint = mig.phase, mig.checkpoint
        if phase == "prune":
            if not target_cls.shared:
                # Everything a Pipam-owned backend holds while inactive is stale: start from nothing.
                with self.sessions() as session, session.begin():
                    report.stale_removed = target_cls(DriverContext(session)).purge()
                    _crash_point("in-prune")
            self._set_phase(mig_id, "copy")
            phase = "copy"
        if phase == "copy":
            self._copy(mig_id, target_cls, options, checkpoint, report)
            self._set_phase(mig_id, "verify")
            phase = "verify"
        return self._verify_and_switch(mig_id, target_cls, options, report)

    def _copy(
        self, mig_id: str, target_cls: type[IpamDriver], options: Options, checkpoint: str | None, report: Report
    ) -> None:
        total = report.counts.get("subnets", 0)
        self.progress.phase("copy", total)
        if checkpoint is not None:
            with self.sessions() as session:
                done = session.get(IpamMigration, mig_id).subnets_done  # type: ignore[union-attr]
            self.progress.note(f"resuming after subnet {checkpoint} ({done} subnets already copied)")
            self.progress.advance(done)
        batch_no = 0
        while True:
            with self.sessions() as session:
                context = DriverContext(session)
                try:
                    with session.begin():
                        batch = next(core_batches(session, options.batch_size, after=checkpoint), None)
                        if not batch:
                            return
                        driver = target_cls(context)
                        for core in batch:
                            addresses = core.addresses
                            if target_cls.shared:
                                held = driver.dump_subnet(core.state.subnet_id)
                                if held is not None:  # adopted: already held, not allocated again
                                    addresses = [a for a in addresses if netaddr.IPAddress(a) not in held.allocations]
                            driver.import_subnet(core.state, addresses)
                        checkpoint = batch[-1].state.subnet_id
                        allocs = sum(len(c.addresses) for c in batch)
                        session.execute(
                            update(IpamMigration)
                            .where(IpamMigration.id == mig_id)
                            .values(
                                checkpoint=checkpoint,
                                subnets_done=IpamMigration.subnets_done + len(batch),
                                allocations_done=IpamMigration.allocations_done + allocs,
                            )
                        )
                        batch_no += 1
                        if os.environ.get("PIPAM_TEST_CRASH_AT") == f"in-batch-{batch_no}":
                            _crash_point(f"in-batch-{batch_no}")
                except BaseException:
                    for undo in reversed(context.rollback_hooks):
                        undo()
                    raise
            self.progress.advance(len(batch))
            _crash_point(f"after-batch-{batch_no}")

    def _verify_and_switch(self, mig_id: str, target_cls: type[IpamDriver], options: Options, report: Report) -> Report:
        self.progress.phase("verify", report.counts.get("subnets", 0))
        with self.sessions() as session:
            comparison = verify(session, target_cls, options.batch_size, self.progress)
        report.verification = comparison.as_dict()
        _crash_point("after-verify")
        with self.sessions() as session, session.begin():
            state = self._state(session, lock=True)
            mig = session.get(IpamMigration, mig_id)
            assert mig is not None
            if not comparison.clean:
                state.fence_migration_id, state.fence_reason = None, None
                mig.status, mig.phase, mig.finished_at = "failed", "verify", utcnow()
                report.outcome = "failed"
                first = comparison.differences[0]
                report.message = (
                    f"verification found {comparison.difference_count} difference(s) (first: {first.subnet_id} "
                    f"{first.kind}: {first.detail}); {state.active_backend!r} stays active and the fence is lifted"
                )
                mig.report, mig.error = report.as_dict(), report.message
                return report
            state.active_backend = options.target
            state.fence_migration_id, state.fence_reason = None, None
            state.updated_at = utcnow()
            mig.status, mig.phase, mig.finished_at = "completed", "switch", utcnow()
            report.message = (
                f"{options.target!r} is now the active backend; restart every server with ipam_driver = "
                f"{options.target!r} (servers still configured for {report.source!r} refuse address changes). "
                f"The data of {report.source!r} is now stale: 'pipam ipam cleanup {report.source}' removes it."
            )
            mig.report = report.as_dict()
        return report


def cleanup(engine: Engine, name: str) -> dict[str, int]:
    """Delete the stale data of a backend that is not active (refused for the active one)."""
    driver_cls = load_driver(name)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        state = session.scalar(select(IpamState).where(IpamState.id == 1).with_for_update())
        if state is None:
            raise MigrationError("the database has no IPAM state; run 'pipam db upgrade' first")
        if state.active_backend == name:
            raise MigrationError(f"{name!r} is the active backend; its data is not stale and cannot be cleaned up")
        running = session.scalar(select(IpamMigration).where(IpamMigration.status == "running"))
        if running is not None and name in (running.target, running.source):
            raise MigrationError(
                f"migration {running.id} ({running.source} -> {running.target}) is in progress; "
                "finish or abort it first"
            )
        if driver_cls.shared:
            raise MigrationError(f"{name!r} is a shared IPAM; Pipam does not delete data other systems may own")
        return driver_cls(DriverContext(session)).purge()
