"""An address change held open after it entered the IPAM gate, for tests of the fence against it."""

from __future__ import annotations

import threading
from typing import Any

from pipam.db.transactions import Transaction
from pipam.service.database import Database, UnitOfWork
from pipam.testing import local


class HeldChange:
    """A port create through Pipam's own transaction runner, held open (in a thread) after it entered the
    gate and allocated, until ``commit()``; not retried, so that its first outcome is seen."""

    def __init__(self, db: Database, network_id: str) -> None:
        self.db = db
        self.network_id = network_id
        self.entered = threading.Event()
        self.go = threading.Event()
        self.port: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.committed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.entered.wait(60), "the port create did not get through the gate"
        assert self.error is None, self.error

    def _run(self) -> None:
        def create(tx: Transaction) -> None:
            self.port = local.create(UnitOfWork(self.db, tx), "port", {"network_id": self.network_id})
            self.entered.set()
            self.go.wait(120)

        try:
            self.db.runner.run(create, retry=False)
            self.committed = True
        except BaseException as exc:
            self.error = exc
            self.entered.set()

    def commit(self, timeout: float) -> bool:
        """Let the transaction commit; False if it has not ended within ``timeout`` seconds."""
        self.go.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self) -> None:
        self.go.set()
        self.thread.join(60)
