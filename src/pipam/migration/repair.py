"""``pipam ipam repair``: rebuild a backend's free space from its pools and the core's allocations.

The way out when verify finds a backend's free space wrong, short of a full re-migration. It finds
the subnets to rebuild online (one snapshot, as verify does, no pause), then raises the fence so that
no address changes while it rebuilds them, checks them again under the fence and lifts it, whatever
happens. Only the rebuild of the broken subnets is fenced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine

from pipam.config import Settings
from pipam.db.transactions import Runner, Transaction
from pipam.errors import IpamSubnetNotFound, MigrationError
from pipam.ipam import state
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.ipam.registry import driver_settings, load_driver
from pipam.migration.compare import Comparison
from pipam.migration.core_state import core_counts, load_subnets
from pipam.migration.free_space import check_of
from pipam.migration.progress import Observer, Silent
from pipam.migration.verify import verify, verify_subnets

T = TypeVar("T")


@dataclass
class RepairReport:
    outcome: str  # dry-run, nothing-to-do, repaired, incomplete
    backend: str
    subnets: list[str] = field(default_factory=list)  # rebuilt, or to rebuild (dry run)
    found: dict[str, Any] | None = None  # the free-space differences found before (what changes)
    after: dict[str, Any] | None = None  # the repaired subnets verified again, under the fence
    fenced_seconds: float | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Repairer:
    def __init__(self, engine: Engine, settings: Settings, observer: Observer | None = None) -> None:
        self.runner = Runner(engine, settings.db_retries)
        self.settings = settings
        self.observer = observer or Silent()

    def _run(self, fn: Callable[[Transaction], T], **kwargs: Any) -> T:
        return self.runner.run(fn, **kwargs)

    def driver(self, tx: Transaction, name: str) -> IpamDriver:
        cls = load_driver(name)
        return cls(DriverContext(tx.session, driver_settings(cls, self.settings.drivers), tx.on_rollback))

    def run(
        self, backend: str, dry_run: bool = False, batch_size: int = 500, take_over_fence: bool = False
    ) -> RepairReport:
        self._preflight(backend, batch_size, take_over_fence)
        found = self._find(backend, batch_size)
        report = RepairReport("dry-run", backend, sorted(found.free_space_subnets), _free_space_only(found))
        if not found.free_space_subnets:
            report.outcome = "nothing-to-do"
            report.message = f"the free space of {backend!r} agrees with its pools and the core's allocations"
            return report
        if dry_run:
            report.message = (
                f"would rebuild the free space of {len(report.subnets)} subnet(s) of {backend!r} under the fence, "
                "changing the ranges listed"
            )
            return report
        return self._repair(backend, report, batch_size, take_over_fence)

    def _preflight(self, backend: str, batch_size: int, take_over_fence: bool) -> None:
        if batch_size < 1:
            raise MigrationError("--batch-size must be at least 1")
        check = check_of(load_driver(backend))
        if check != "ranges":
            what = "probes an outside IPAM" if check == "probe" else "declares no free space check"
            raise MigrationError(
                f"backend {backend!r} keeps no free ranges of its own (it {what}); there is nothing to rebuild"
            )

        def run(tx: Transaction) -> None:
            mig = state.running(tx.session)
            if mig is not None:
                raise MigrationError(
                    f"migration {mig.id} ({mig.source} -> {mig.target}) is in progress; finish or abort it first"
                )
            fence = state.read(tx.session).fence
            if fence is not None and not (take_over_fence and state.is_repair(fence)):
                hint = " If that repair was killed, re-run with --take-over-fence." if state.is_repair(fence) else ""
                raise MigrationError(f"{state.fence_holder(fence)} holds the fence; see 'pipam ipam status'.{hint}")

        self._run(run, write=False)

    def _find(self, backend: str, batch_size: int) -> Comparison:
        """The whole backend verified online, in one snapshot: which subnets' free space is wrong."""

        def run(tx: Transaction) -> Comparison:
            self.observer.phase("verify", core_counts(tx.session)["subnets"])
            return verify(tx.session, self.driver(tx, backend), batch_size, self.observer)

        return self._run(run, write=False, snapshot=True)

    def _repair(self, backend: str, report: RepairReport, batch_size: int, take_over_fence: bool) -> RepairReport:
        repair_id = state.new_repair_id()
        reason = f"rebuilding the free space of backend {backend!r} ({state.new_owner()})"
        started = time.monotonic()

        def fence_up(tx: Transaction) -> None:
            current = state.read(tx.session).fence
            if take_over_fence and current is not None and state.is_repair(current):
                state.take_over_fence(tx.session, current, repair_id, reason)
            else:
                state.raise_fence(tx.session, repair_id, reason)

        self._run(fence_up)
        try:
            self.observer.note(f"fence raised ({repair_id}): address changes wait while free space is rebuilt")
            self.observer.checkpoint("after-fence")
            self.observer.phase("repair", len(report.subnets))
            for start in range(0, len(report.subnets), batch_size):
                chunk = report.subnets[start : start + batch_size]
                self._run(lambda tx, ids=chunk: self._rebuild(tx, backend, repair_id, ids))
                self.observer.advance(len(chunk))
            after = self._run(lambda tx: verify_subnets(tx.session, self.driver(tx, backend), report.subnets))
        finally:
            self._run(lambda tx: state.lower_fence(tx.session, repair_id))
        report.fenced_seconds = round(time.monotonic() - started, 3)
        report.after = after.as_dict()
        if after.free_space_subnets:
            report.outcome = "incomplete"
            report.message = (
                f"rebuilt {len(report.subnets)} subnet(s), but {len(after.free_space_subnets)} still differ "
                "(see 'after'): their pools or allocations in the backend differ from the core; re-migrate"
            )
        else:
            report.outcome = "repaired"
            report.message = (
                f"rebuilt the free space of {len(report.subnets)} subnet(s) of {backend!r}; address changes "
                f"were paused for {report.fenced_seconds:.3f} s"
            )
        return report

    def _rebuild(self, tx: Transaction, backend: str, repair_id: str, subnet_ids: list[str]) -> None:
        if state.read(tx.session).fence != repair_id:  # taken over by another repair: it finishes the job
            raise MigrationError(f"repair {repair_id} no longer holds the fence; stopping")
        driver = self.driver(tx, backend)
        for core in load_subnets(tx.session, subnet_ids):  # a subnet deleted since it was found is skipped
            try:
                driver.rebuild_free_space(core.state.subnet_id, core.addresses)
            except IpamSubnetNotFound:
                continue
        self.observer.checkpoint("in-repair-batch")


def _free_space_only(comparison: Comparison) -> dict[str, Any]:
    data = comparison.as_dict()
    listed = [d for d in data["differences"] if d["kind"].startswith("free_space_")]
    return {"free_space": data["free_space"], "differences": listed}
