"""One server process's view of the database: its engine, the transaction runner, the IPAM backends
it can use, and the unit of work every operation runs in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from pipam.config import Settings
from pipam.db.engine import make_engine
from pipam.db.transactions import Runner, Transaction
from pipam.errors import IpamBackendUnavailable, IpamDriverNotFound, NotNow
from pipam.ipam.interface import IpamDriver, keeps_state_in_database
from pipam.ipam.registry import driver_settings, load_driver
from pipam.service.allocation import AllocationEngine

T = TypeVar("T")


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url, pool_size=settings.db_connections)
        self.runner = Runner(self.engine, settings.db_retries)
        self._backends: dict[str, tuple[type[IpamDriver], Any]] = {}

    @property
    def retries(self) -> int:
        return self.runner.retries

    @property
    def embedded(self) -> bool:
        """SQLite, in this process: nothing to wait for on a network."""
        return self.runner.embedded

    def backend(self, name: str) -> tuple[type[IpamDriver], Any]:
        """The driver class and settings for backend ``name``, or why this server cannot allocate through it.

        Servers follow the backend the database records, switching at the commit that switches it;
        ``pin_ipam_driver`` makes a server refuse any backend but its configured ``ipam_driver``.
        """
        if name not in self._backends:
            if self.settings.pin_ipam_driver and name != self.settings.ipam_driver:
                raise IpamBackendUnavailable(
                    f"This server is pinned to IPAM backend {self.settings.ipam_driver!r} (pin_ipam_driver) but the "
                    f"database's active backend is {name!r}; address changes are refused until they agree."
                )
            try:
                cls = load_driver(name)
                self._backends[name] = (cls, driver_settings(cls, self.settings.drivers))
            except IpamDriverNotFound as exc:
                raise IpamBackendUnavailable(
                    f"The database's active IPAM backend is {name!r}, which this server cannot use: {exc.message}"
                ) from None
        return self._backends[name]

    def session(self, write: bool = True) -> Session:
        """A session outside the unit of work, for reads that need no retry (tests, tools)."""
        return self.runner.session(write)

    def run(self, fn: Callable[[UnitOfWork], T], *, write: bool = True, snapshot: bool = False) -> T:
        """Run ``fn`` in one transaction (retried from scratch after a deadlock or a lost race)."""
        return self.runner.run(lambda tx: fn(UnitOfWork(self, tx)), write=write, snapshot=snapshot)

    def run_now(self, fn: Callable[[UnitOfWork], T]) -> T:
        """Run the change ``fn`` on SQLite without waiting for anything: :class:`NotNow` (rolled back) when
        the write lock is taken, when it would be rerun, or when the active backend is not in the database;
        :class:`HeldInProcess`, a kind of NotNow, when another change of this process holds the lock."""
        return self.runner.run(lambda tx: fn(UnitOfWork(self, tx, now=True)), now=True)

    async def writes_released(self) -> None:
        """Once the change of this process that held its SQLite write lock has ended (see ``run_now``)."""
        await self.runner.writes_released()

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """One operation's transaction, and its address changes through the allocation engine."""

    def __init__(self, db: Database, tx: Transaction, *, now: bool = False) -> None:
        self.db = db
        self.tx = tx
        self.settings = db.settings
        self.now = now
        self._addresses: AllocationEngine | None = None

    @property
    def session(self) -> Session:
        return self.tx.session

    @property
    def addresses(self) -> AllocationEngine:
        if self._addresses is None:
            self._addresses = AllocationEngine(self.tx, self._backend_now if self.now else self.db.backend)
        return self._addresses

    def _backend_now(self, name: str) -> tuple[type[IpamDriver], Any]:
        cls, settings = self.db.backend(name)
        if not keeps_state_in_database(cls):
            raise NotNow()  # its calls may leave the process: not on the event loop
        return cls, settings
