"""The unit of work: one transaction, retried on deadlocks and lost races, guarded by the fence."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from pipam.config import Settings
from pipam.db.engine import is_connection_lost, is_retryable, make_engine, make_sessionmaker
from pipam.db.models import IpamState
from pipam.errors import Conflict, RetryTransaction, ServiceUnavailable
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.ipam.registry import load_driver

log = logging.getLogger("pipam.service")
T = TypeVar("T")


class DatabaseUnavailable(ServiceUnavailable):
    type = "DatabaseUnavailable"


class IpamFenced(ServiceUnavailable):
    type = "IpamMigrationInProgress"


class IpamBackendMismatch(ServiceUnavailable):
    type = "IpamBackendMismatch"


class Database:
    """Engine, sessions and the configured IPAM driver of one server process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self._write = make_sessionmaker(self.engine)
        self._read = make_sessionmaker(self.engine.execution_options(sqlite_immediate=False))
        self.driver_name = settings.ipam_driver
        self.retries = 0  # transactions rerun after a deadlock or lost race (reported by benchmarks)
        # SQLite has one writer at a time; threads of one process queue here instead of poll-sleeping in
        # SQLite's busy handler (steps of up to 100 ms). Across processes SQLite's own lock still decides.
        self._sqlite_writes = threading.Lock() if self.engine.url.get_backend_name() == "sqlite" else None

    @property
    def driver_class(self) -> type[IpamDriver]:
        return load_driver(self.driver_name)

    def session(self, write: bool = True) -> Session:
        return (self._write if write else self._read)()

    def run(self, fn: Callable[[UnitOfWork], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction; rerun it from scratch when it lost a race or a deadlock."""
        attempts = max(1, self.settings.db_retries)
        for attempt in range(1, attempts + 1):
            uow = UnitOfWork(self, self.session(write))
            queue = self._sqlite_writes if write and self._sqlite_writes is not None else contextlib.nullcontext()
            try:
                with queue, uow.session.begin():
                    result = fn(uow)
                return result
            except (RetryTransaction, DBAPIError) as exc:
                uow.undo_outside_effects()
                if isinstance(exc, DBAPIError) and is_connection_lost(exc):
                    raise DatabaseUnavailable(
                        "The database is unavailable; try again shortly.",
                        retry_after=self.settings.retry_after,
                    ) from exc
                if isinstance(exc, DBAPIError) and not is_retryable(exc):
                    raise
                if attempt == attempts:
                    if isinstance(exc, IntegrityError):
                        raise Conflict(f"Conflicting concurrent change; retried {attempts} times") from exc
                    raise ServiceUnavailable(
                        f"Too much contention; retried {attempts} times",
                        retry_after=self.settings.retry_after,
                    ) from exc
                self.retries += 1
                log.debug("retrying transaction (attempt %d): %s", attempt, exc)
                time.sleep(random.uniform(0, 0.005 * 2 ** min(attempt, 7)))
            except BaseException:
                uow.undo_outside_effects()
                raise
            finally:
                uow.session.close()
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    def __init__(self, db: Database, session: Session) -> None:
        self.db = db
        self.session = session
        self.settings = db.settings
        self._driver: IpamDriver | None = None
        self._context: DriverContext | None = None

    def ipam(self) -> IpamDriver:
        """The backend, for a change of addresses; refuses while fenced or configured for another."""
        if self._driver is None:
            state = self.session.execute(
                # A shared lock: the migration's fence (an UPDATE of this row) waits for every
                # address-changing transaction in flight, and later ones see the fence.
                select(IpamState).where(IpamState.id == 1).with_for_update(read=True)
            ).scalar_one_or_none()
            check_state(state, self.db.driver_name, self.settings.retry_after)
            self._context = DriverContext(self.session, self.settings)
            self._driver = self.db.driver_class(self._context)
        return self._driver

    def undo_outside_effects(self) -> None:
        """Tell a driver outside the database to undo what this transaction allocated."""
        if self._context is None:
            return
        for undo in reversed(self._context.rollback_hooks):
            try:
                undo()
            except Exception:  # an undo failing must not hide the original error
                log.exception("IPAM driver rollback hook failed")
        self._context.rollback_hooks.clear()


def check_state(state: IpamState | None, configured: str, retry_after: int) -> None:
    if state is None:
        raise ServiceUnavailable("The database has no IPAM state; run 'pipam db upgrade' first.")
    if state.fence_migration_id is not None:
        raise IpamFenced(
            f"IPAM backend migration {state.fence_migration_id} is in progress "
            f"({state.fence_reason or 'migrating'}); address changes resume when it ends.",
            retry_after=retry_after,
        )
    if state.active_backend != configured:
        raise IpamBackendMismatch(
            f"This server is configured with ipam_driver {configured!r} but the database's active "
            f"IPAM backend is {state.active_backend!r}. Set ipam_driver = {state.active_backend!r}, or run "
            f"'pipam ipam migrate --to {configured}' to switch the database.",
            retry_after=retry_after,
        )
