"""The migration between IPAM backends, online: servers keep allocating while it copies.

Phases (each recorded, so that running the same command again after a crash finishes the job):

1. *start*: the run records itself with its owner's lease, and from the same commit every address
   change is journalled for the target (``pipam.ipam.state``).
2. *prune*: a Pipam-owned target loses its stale data.
3. *copy*: the core tables are copied into the target in batches of subnets, each batch one
   transaction that also moves the checkpoint and renews the lease.
4. *catch-up*: the journal is replayed into the target (each entry makes the target agree with the
   core for one address or one subnet) until little is left.
5. *verify*: the whole target against the core in one consistent snapshot, leaving out what the
   journal says changed since the last catch-up. Any difference fails the migration: the source
   stays active, nothing was fenced. Then another catch-up.
6. *switch*: the fence goes up (in-flight changes finish first), the rest of the journal is replayed
   and the subnets it touched are verified, and one transition makes the target active and lifts
   the fence. Only this phase refuses writes; it is as long as the journal is short.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import netaddr
from sqlalchemy import Engine, select

from pipam.config import Settings
from pipam.db.models import IPAllocation
from pipam.db.transactions import Runner, Transaction
from pipam.errors import IpamSubnetNotFound, MigrationError
from pipam.ipam import state
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.ipam.registry import driver_settings, load_driver
from pipam.migration.compare import Comparison
from pipam.migration.core_state import check_core, core_batches, core_counts, load_subnets
from pipam.migration.progress import Observer, Silent
from pipam.migration.verify import verify, verify_subnets
from pipam.service.bootstrap import require_current

T = TypeVar("T")

REPLAY_CHUNK = 2000
# Catch-up stops when the journal holds at most this many entries: what is left is replayed under the
# fence, so it bounds the write pause.
CATCH_UP_TARGET = 500
CATCH_UP_PASSES = 50


@dataclass
class Options:
    target: str
    batch_size: int = 500
    # A copy batch also stops at this many addresses, so that each transaction stays short (on SQLite,
    # where one writer at a time, it is how long servers wait behind it).
    batch_addresses: int = 2000
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
    replayed: int = 0
    fenced_seconds: float | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Lease:
    """Renews the run's lease in the background between its own transactions (a long verify must not
    let it expire); ``lost`` is set when another process has taken the migration over."""

    def __init__(self, runner: Runner, migration_id: str, owner: str) -> None:
        self.runner, self.migration_id, self.owner = runner, migration_id, owner
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="migration-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(state.LEASE_SECONDS / 4):
            try:
                self.runner.run(lambda tx: state.heartbeat(tx.session, self.migration_id, self.owner))
            except MigrationError as exc:
                self.lost = exc.message
                return
            except Exception:  # a database hiccup: the next renewal (or the run itself) will tell
                continue

    def check(self) -> None:
        if self.lost:
            raise MigrationError(self.lost)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Migrator:
    def __init__(self, engine: Engine, settings: Settings, observer: Observer | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.runner = Runner(engine, settings.db_retries)
        self.observer = observer or Silent()
        self.owner = state.new_owner()
        # SQLite has one writer at a time, and a server waiting for the lock polls for it (every 100 ms
        # at most): without a breath between batches the migration would take the lock back every time.
        self.pause = 0.1 if engine.url.get_backend_name() == "sqlite" else 0.0

    def run_tx(self, fn: Callable[[Transaction], T], **kwargs: Any) -> T:
        return self.runner.run(fn, **kwargs)

    def driver(self, tx: Transaction, name: str) -> IpamDriver:
        cls = load_driver(name)
        return cls(DriverContext(tx.session, driver_settings(cls, self.settings.drivers), tx.on_rollback))

    # --- abort ---------------------------------------------------------------------------------

    def abort(self, target: str) -> Report:
        def run(tx: Transaction) -> Report:
            mig = state.running(tx.session, lock=True)
            if mig is None:
                raise MigrationError("no migration is in progress; nothing to abort")
            if mig.target != target:
                raise MigrationError(
                    f"the migration in progress goes from {mig.source!r} to {mig.target!r}, not to {target!r}; "
                    f"abort it with 'pipam ipam migrate --to {mig.target} --abort'"
                )
            if state.lease_alive(tx.session, mig) and mig.owner != self.owner:
                raise MigrationError(
                    f"migration {mig.id} is running ({state.describe_owner(tx.session, mig)}); stop that "
                    "process first (Ctrl-C, or wait for it), then abort"
                )
            current = state.read(tx.session)
            if current.fence == mig.id:
                state.lower_fence(tx.session, mig.id)
            state.stop_journal(tx.session)
            report = Report(
                "aborted",
                mig.source,
                mig.target,
                mig.id,
                message=f"aborted; {current.active!r} stays active. The target's partial data is stale: "
                f"'pipam ipam cleanup {mig.target}' removes it.",
            )
            state.finish(tx.session, mig.id, "aborted", report.as_dict())
            return report

        return self.run_tx(run)

    # --- preflight -----------------------------------------------------------------------------

    def preflight(self, options: Options) -> tuple[Any, str, dict[str, int]]:
        if options.batch_size < 1:
            raise MigrationError("--batch-size must be at least 1")
        require_current(self.engine)
        load_driver(options.target)

        def run(tx: Transaction) -> tuple[Any, str, dict[str, int]]:
            session = tx.session
            active = state.read(session).active
            mig = state.running(session)
            if mig is not None:
                if mig.target != options.target:
                    raise MigrationError(
                        f"migration {mig.id} from {mig.source!r} to {mig.target!r} is in progress; finish it with "
                        f"'pipam ipam migrate --to {mig.target}' or give it up with 'pipam ipam migrate --to "
                        f"{mig.target} --abort'"
                    )
                if state.lease_alive(session, mig):
                    raise MigrationError(
                        f"migration {mig.id} to {mig.target!r} is already running "
                        f"({state.describe_owner(session, mig)}); only one migration runs at a time"
                    )
            problems = list(check_core(session, options.batch_size))
            if problems:
                lines = [f"{p.subnet_id or '-'}: {p.problem}" for p in problems[:50]]
                raise MigrationError(
                    f"core tables are inconsistent ({len(problems)} problem(s)); fix them before migrating:\n  "
                    + "\n  ".join(lines),
                    {"problems": [p.__dict__ for p in problems[:1000]]},
                )
            return (None if mig is None else mig.id), active, core_counts(session)

        return self.run_tx(run, write=False)

    def conflicts(self, target: str, batch_size: int) -> list[dict[str, str]]:
        """Addresses the core allocates that a shared target already holds for someone else."""
        if not load_driver(target).shared:
            return []

        def run(tx: Transaction) -> list[dict[str, str]]:
            driver = self.driver(tx, target)
            found: list[dict[str, str]] = []
            for batch in core_batches(tx.session, batch_size):
                for core in batch:
                    held = driver.dump_subnet(core.state.subnet_id)
                    if held is None:
                        continue
                    overlap = held.allocations & core.state.allocations
                    own = getattr(driver, "created_by_pipam", None)  # Pipam's own leftovers are no conflict
                    if own is not None:
                        overlap -= own(core.state.subnet_id)
                    for cidr in overlap.iter_cidrs():
                        for ip in cidr:
                            found.append(
                                {
                                    "subnet_id": core.state.subnet_id,
                                    "ip_address": str(ip),
                                    "detail": f"{target} already holds {ip}",
                                }
                            )
            return found

        return self.run_tx(run, write=False)

    # --- run -----------------------------------------------------------------------------------

    def run(self, options: Options) -> Report:
        mig_id, active, counts = self.preflight(options)
        if mig_id is None and active == options.target:
            return Report(
                "nothing-to-do",
                active,
                options.target,
                counts=counts,
                message=f"{options.target!r} is already the active backend",
            )
        target_cls = load_driver(options.target)
        # Decided once, before anything is written: on a resumed run the target also holds what we copied.
        conflicts = self.conflicts(options.target, options.batch_size) if mig_id is None else []
        if options.dry_run:
            return self._plan(options, mig_id, active, counts, conflicts)
        if conflicts and options.on_conflict == "fail":
            listed = "\n  ".join(f"{c['subnet_id']} {c['ip_address']}: {c['detail']}" for c in conflicts[:50])
            raise MigrationError(
                f"{len(conflicts)} conflict(s): the target already holds addresses the core allocates; "
                f"re-run with --on-conflict adopt to take them over:\n  {listed}",
                {"conflicts": conflicts},
            )
        resumed = mig_id is not None
        mig_id = self._take_over(options) if resumed else self._start(active, options)
        source = self.run_tx(lambda tx: state.get(tx.session, mig_id).source, write=False)
        report = Report(
            "completed", source, options.target, mig_id, resumed=resumed, counts=counts, conflicts=conflicts
        )
        lease = Lease(self.runner, mig_id, self.owner)
        try:
            return self._continue(mig_id, target_cls.shared, options, report, lease)
        except KeyboardInterrupt:
            self._interrupted(mig_id)
            raise
        finally:
            lease.stop()

    def _plan(
        self, options: Options, mig_id: str | None, active: str, counts: dict[str, int], conflicts: list[dict[str, str]]
    ) -> Report:
        shared = load_driver(options.target).shared
        held = self.run_tx(lambda tx: self.driver(tx, options.target).counts(), write=False)
        rows = counts.get("subnets", 0) + counts.get("pools", 0) + counts.get("allocations", 0)
        # Measured on the reference machine (bench/README.md): ~25,000 rows/s copied and ~40,000 verified.
        estimate = rows / 25_000 + rows / 40_000
        return Report(
            "dry-run",
            active,
            options.target,
            mig_id,
            resumed=mig_id is not None,
            counts=counts,
            conflicts=conflicts,
            stale_removed={} if shared else held,
            message=f"would copy {counts['subnets']} subnets and {counts['allocations']} allocations in batches of "
            f"{options.batch_size} while servers keep allocating (about {estimate:,.0f} s on the reference machine), "
            f"then fence address changes for the final catch-up and switch (well under a second)"
            + ("" if shared or not any(held.values()) else f"; the target's stale data ({held}) would be replaced"),
        )

    def _start(self, source: str, options: Options) -> str:
        """Record the migration and turn the journal on, in one transaction."""

        def run(tx: Transaction) -> str:
            current = state.running(tx.session, lock=True)
            if current is not None:  # another run started between our preflight and now
                raise MigrationError(
                    f"migration {current.id} to {current.target!r} is already recorded "
                    f"({state.describe_owner(tx.session, current)}); only one migration runs at a time"
                )
            opts = {"batch_size": options.batch_size, "on_conflict": options.on_conflict}
            mig_id = state.start_migration(tx.session, source, options.target, self.owner, opts)
            state.start_journal(tx.session, options.target)
            return mig_id

        mig_id = self.run_tx(run)
        self.observer.note(f"migration {mig_id}: {source} -> {options.target}; address changes are journalled")
        self.observer.checkpoint("after-start")
        return mig_id

    def _take_over(self, options: Options) -> str:
        def run(tx: Transaction) -> str:
            mig = state.running(tx.session, lock=True)
            if mig is None or mig.target != options.target:
                raise MigrationError("the interrupted migration is gone; run the command again")
            if state.lease_alive(tx.session, mig):
                raise MigrationError(f"migration {mig.id} is already running ({state.describe_owner(tx.session, mig)})")
            state.take_over(tx.session, mig, self.owner)
            return mig.id

        mig_id = self.run_tx(run)
        self.observer.note(f"resuming migration {mig_id} (its previous run was interrupted)")
        return mig_id

    def _interrupted(self, mig_id: str) -> None:
        """Ctrl-C: lift our fence if it is up, and give the lease back so that a re-run resumes at once."""

        def run(tx: Transaction) -> None:
            if state.read(tx.session).fence == mig_id:
                state.lower_fence(tx.session, mig_id)
            state.set_progress(tx.session, mig_id, heartbeat_at=None)

        try:
            self.run_tx(run)
            self.observer.note(f"interrupted: run 'pipam ipam migrate --to ...' again to resume migration {mig_id}")
        except Exception as exc:
            self.observer.note(f"interrupted; could not release the migration cleanly ({exc}); it resumes later")

    def _phase(self, mig_id: str, phase: str) -> None:
        self.run_tx(lambda tx: state.set_progress(tx.session, mig_id, phase=phase))

    def _continue(self, mig_id: str, shared: bool, options: Options, report: Report, lease: Lease) -> Report:
        mig = self.run_tx(lambda tx: state.get(tx.session, mig_id), write=False)
        phase, checkpoint = mig.phase, mig.checkpoint
        if phase == "switch":
            # Interrupted with the fence up: lift it and catch up online again (the safe way back).
            self.run_tx(lambda tx: state.lower_fence(tx.session, mig_id))
            phase = "catch-up"
        if phase == "prune":
            if not shared:
                # Everything a Pipam-owned backend holds while inactive is stale: start from nothing.
                def prune(tx: Transaction) -> dict[str, int]:
                    state.heartbeat(tx.session, mig_id, self.owner)
                    removed = self.driver(tx, options.target).purge()
                    self.observer.checkpoint("in-prune")
                    return removed

                report.stale_removed = self.run_tx(prune)
            self._phase(mig_id, "copy")
            phase = "copy"
        if phase == "copy":
            self._copy(mig_id, options, checkpoint, report, lease, shared)
            self._phase(mig_id, "catch-up")
            phase = "catch-up"
        self._catch_up(mig_id, options, report, lease)
        comparison, touched = self._verify_online(options, report)
        self.observer.checkpoint("after-verify")
        if not comparison.clean:
            return self._fail(mig_id, report, comparison)
        # What changes from here on is verified under the fence, subnet by subnet.
        self._catch_up(mig_id, options, report, lease, touched)
        return self._switch(mig_id, options, report, lease, touched)

    # --- copy ----------------------------------------------------------------------------------

    def _copy(
        self, mig_id: str, options: Options, checkpoint: str | None, report: Report, lease: Lease, shared: bool
    ) -> None:
        self.observer.phase("copy", report.counts.get("subnets", 0))
        if checkpoint is not None:
            done = self.run_tx(lambda tx: state.get(tx.session, mig_id).subnets_done, write=False)
            self.observer.note(f"resuming after subnet {checkpoint} ({done} subnets already copied)")
            self.observer.advance(done)
        batch_no = 0
        while True:
            lease.check()
            batch_no += 1

            def copy_batch(
                tx: Transaction, after: str | None = checkpoint, n: int = batch_no
            ) -> tuple[str, int] | None:
                state.heartbeat(tx.session, mig_id, self.owner)
                batch = next(core_batches(tx.session, options.batch_size, after, options.batch_addresses), None)
                if not batch:
                    return None
                driver = self.driver(tx, options.target)
                for core in batch:
                    addresses = core.addresses
                    if shared:
                        held = driver.dump_subnet(core.state.subnet_id)
                        if held is not None:  # adopted: already held, not allocated again
                            addresses = [a for a in addresses if netaddr.IPAddress(a) not in held.allocations]
                    driver.import_subnet(core.state, addresses)
                last = batch[-1].state.subnet_id
                allocations = sum(len(c.addresses) for c in batch)
                mig = state.get(tx.session, mig_id)
                state.set_progress(
                    tx.session,
                    mig_id,
                    checkpoint=last,
                    subnets_done=mig.subnets_done + len(batch),
                    allocations_done=mig.allocations_done + allocations,
                )
                self.observer.checkpoint(f"in-batch-{n}")
                return last, len(batch)

            done = self.run_tx(copy_batch)
            if done is None:
                return
            checkpoint, size = done
            self.observer.advance(size)
            self.observer.checkpoint(f"after-batch-{batch_no}")
            time.sleep(self.pause)

    # --- catch-up ------------------------------------------------------------------------------

    def _replay(self, mig_id: str, options: Options, touched: dict[str, set[str] | None] | None = None) -> int:
        """Replay one chunk of the journal into the target; the number of entries replayed."""

        def run(tx: Transaction) -> int:
            state.heartbeat(tx.session, mig_id, self.owner)
            entries = state.journal_batch(tx.session, REPLAY_CHUNK)
            if not entries:
                return 0
            driver = self.driver(tx, options.target)
            whole = sorted({sid for _, sid, ip in entries if ip is None})
            cores = {c.state.subnet_id: c for c in load_subnets(tx.session, whole)}
            for sid in whole:
                if sid in cores:
                    driver.import_subnet(cores[sid].state, cores[sid].addresses)
                else:
                    driver.remove_subnet(sid)
            by_subnet: dict[str, set[str]] = {}
            for _, sid, ip in entries:
                if ip is not None and sid not in whole:
                    by_subnet.setdefault(sid, set()).add(ip)
            for sid, ips in by_subnet.items():
                held = set(
                    tx.session.scalars(
                        select(IPAllocation.ip_address).where(
                            IPAllocation.subnet_id == sid, IPAllocation.ip_address.in_(sorted(ips))
                        )
                    )
                )
                try:
                    handle = driver.get_subnet(sid)
                except IpamSubnetNotFound:
                    continue  # not copied yet (the copy will bring it) or deleted (a subnet entry follows)
                for ip in sorted(ips):
                    handle.reconcile(ip, ip in held)
            if touched is not None:
                for sid in whole:
                    touched[sid] = None
                for sid, ips in by_subnet.items():
                    if touched.get(sid, set()) is not None:
                        touched.setdefault(sid, set()).update(ips)  # type: ignore[union-attr]
            state.journal_forget(tx.session, [i for i, _, _ in entries])
            return len(entries)

        done = self.run_tx(run)
        return done

    def _catch_up(
        self,
        mig_id: str,
        options: Options,
        report: Report,
        lease: Lease,
        touched: dict[str, set[str] | None] | None = None,
    ) -> None:
        pending = self.run_tx(lambda tx: state.journal_pending(tx.session), write=False)
        self.observer.phase("catch-up", pending)
        for _ in range(CATCH_UP_PASSES):
            lease.check()
            if pending <= CATCH_UP_TARGET:
                break
            while pending > CATCH_UP_TARGET:
                done = self._replay(mig_id, options, touched)
                report.replayed += done
                self.observer.advance(done)
                pending -= done
                time.sleep(self.pause)
                if done == 0:
                    break
            pending = self.run_tx(lambda tx: state.journal_pending(tx.session), write=False)
        self.observer.checkpoint("after-catch-up")

    # --- verify and switch ---------------------------------------------------------------------

    def _verify_online(self, options: Options, report: Report) -> tuple[Comparison, dict[str, set[str] | None]]:
        """The whole target against the core in one snapshot, leaving out what is still journalled."""
        self.observer.phase("verify", report.counts.get("subnets", 0))

        def run(tx: Transaction) -> tuple[Comparison, dict[str, set[str] | None]]:
            pending: dict[str, set[str] | None] = {}
            for _, sid, ip in state.journal_batch(tx.session, 10**9):
                if ip is None:
                    pending[sid] = None
                elif pending.get(sid, set()) is not None:
                    pending.setdefault(sid, set()).add(ip)  # type: ignore[union-attr]
            as_sets = {sid: None if ips is None else netaddr.IPSet(ips) for sid, ips in pending.items()}
            driver = self.driver(tx, options.target)
            return verify(tx.session, driver, options.batch_size, self.observer, as_sets), pending

        comparison, pending = self.run_tx(run, write=False, snapshot=True)
        report.verification = comparison.as_dict()
        return comparison, pending

    def _fail(self, mig_id: str, report: Report, comparison: Comparison) -> Report:
        first = comparison.differences[0]
        report.verification = comparison.as_dict()  # the verify that failed: online, or the fenced one

        def run(tx: Transaction) -> Report:
            current = state.read(tx.session)
            if current.fence == mig_id:
                state.lower_fence(tx.session, mig_id)
            state.stop_journal(tx.session)
            report.outcome = "failed"
            report.message = (
                f"verification found {comparison.difference_count} difference(s) (first: {first.subnet_id} "
                f"{first.kind}: {first.detail}); {current.active!r} stays active"
            )
            state.finish(tx.session, mig_id, "failed", report.as_dict(), report.message)
            return report

        return self.run_tx(run)

    def _switch(
        self, mig_id: str, options: Options, report: Report, lease: Lease, touched: dict[str, set[str] | None]
    ) -> Report:
        lease.check()
        self._phase(mig_id, "switch")
        started = time.monotonic()
        reason = f"migrating {report.source} -> {options.target}: final catch-up and switch"
        self.run_tx(lambda tx: state.raise_fence(tx.session, mig_id, reason))
        self.observer.note("fence raised: address changes wait for the final catch-up and the switch")
        self.observer.checkpoint("after-fence")
        while done := self._replay(mig_id, options, touched):
            report.replayed += done

        def finish(tx: Transaction) -> Comparison:
            comparison = verify_subnets(tx.session, self.driver(tx, options.target), touched.keys())
            if comparison.clean:
                state.switch(tx.session, mig_id, options.target)
                report.fenced_seconds = round(time.monotonic() - started, 3)
                report.message = (
                    f"{options.target!r} is now the active backend; every server follows at this commit. "
                    f"Writes were paused for {report.fenced_seconds:.3f} s. The data of {report.source!r} is now "
                    f"stale: 'pipam ipam cleanup {report.source}' removes it."
                )
                state.finish(tx.session, mig_id, "completed", report.as_dict())
            return comparison

        final = self.run_tx(finish)
        if not final.clean:
            return self._fail(mig_id, report, final)
        self.observer.checkpoint("after-switch")
        return report


def cleanup(engine: Engine, settings: Settings, name: str) -> dict[str, int]:
    """Delete the stale data of a backend that is not active (refused for the active one)."""
    cls = load_driver(name)

    def run(tx: Transaction) -> dict[str, int]:
        current = state.read(tx.session)
        if current.active == name:
            raise MigrationError(f"{name!r} is the active backend; its data is not stale and cannot be cleaned up")
        running = state.running(tx.session)
        if running is not None and name in (running.target, running.source):
            raise MigrationError(
                f"migration {running.id} ({running.source} -> {running.target}) is in progress; "
                "finish or abort it first"
            )
        # A shared IPAM holds others' data too: cleaned up only by a driver whose purge removes just its own.
        if cls.shared and not getattr(cls, "purges_only_its_own", False):
            raise MigrationError(f"{name!r} is a shared IPAM; Pipam does not delete data other systems may own")
        return cls(DriverContext(tx.session, driver_settings(cls, settings.drivers), tx.on_rollback)).purge()

    return Runner(engine, settings.db_retries).run(run)
