"""The fence waits for address changes in flight (issue 18, item 1).

A port create opens its transaction and takes its address after the migration's online verify, then
holds the transaction open while the migration asks for the fence, and commits only once the fence's
request is waiting on it (or the migration got past the fence without waiting, which is the bug). The
migration must either wait for that commit and carry the address into the new backend, or the create
must fail; ``verify`` afterwards must be clean either way.

On PostgreSQL and MariaDB the wait is the gate (``ipam.state.enter`` writes a gate slot that the fence
must also write); without it the fence goes up at once, the switch commits first, and the address is
missing from the new backend. On SQLite the open transaction holds the database's write lock, which
the migration waits for as well.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pipam.errors import PipamError
from pipam.ipam import state
from pipam.migration.runner import Migrator, Options
from pipam.service.database import UnitOfWork
from pipam.testing import local
from tests import dataset
from tests.held_change import lock_poll_interval, lock_waiters
from tests.helpers import AtCheckpoint
from tests.test_migration import OTHER, as_driver, cli_json

GIVE_UP = 120.0  # seconds: only a hung test ends here; nothing is asserted about time
# Seconds a change waits for the fence to show as a lock wait before it commits anyway: far below the
# database's lock wait timeout (50 s on MariaDB), far above what a migration without the gate takes.
PATIENCE = 8.0


def test_fence_waits_for_an_address_change_in_flight(db, schema_url, backend, monkeypatch):
    made = dataset.build(db, 20)
    network = made["b"]["id"]
    target = OTHER[backend]

    change_go = threading.Event()  # the migration reached the point where the change starts
    in_flight = threading.Event()  # the change holds its address, its transaction open
    fence_requested = threading.Event()
    requested_at = [0.0]
    migration_done = threading.Event()
    outcome: dict[str, Any] = {}

    def change() -> None:
        change_go.wait(GIVE_UP)

        def create(u: UnitOfWork) -> dict[str, Any]:
            created = local.create(u, "port", {"network_id": network})
            in_flight.set()
            # Commit only once the fence is asked for and waits for us (or the migration is over).
            deadline = time.monotonic() + GIVE_UP
            while not migration_done.is_set() and time.monotonic() < deadline:
                if db.engine.dialect.name == "sqlite":
                    # The migration's next write waits for SQLite's write lock, which this transaction holds.
                    migration_done.wait(2.0)
                    break
                if fence_requested.is_set():
                    with db.engine.connect() as conn:
                        if lock_waiters(conn) > 0:
                            break
                if fence_requested.is_set() and time.monotonic() - requested_at[0] > PATIENCE:
                    # The server did not show the wait: commit anyway. Without the gate the migration
                    # is over long before this.
                    break
                time.sleep(lock_poll_interval(db.engine.dialect.name))
            return created

        try:
            outcome["port"] = db.run(create)
        except PipamError as exc:
            outcome["error"] = exc
        finally:
            in_flight.set()

    def start_change() -> None:
        change_go.set()
        assert in_flight.wait(GIVE_UP), "the change never took its address"

    real_raise_fence = state.raise_fence

    def raise_fence(session: Any, migration_id: str, reason: str) -> None:
        requested_at[0] = time.monotonic()
        fence_requested.set()
        real_raise_fence(session, migration_id, reason)

    monkeypatch.setattr(state, "raise_fence", raise_fence)
    changer = threading.Thread(target=change, daemon=True)
    changer.start()
    try:
        # On SQLite the change holds the write lock from here on: the migration's next write waits.
        report = Migrator(db.engine, db.settings, AtCheckpoint("after-verify", start_change)).run(
            Options(target=target)
        )
    finally:
        fence_requested.set()
        migration_done.set()
        changer.join(GIVE_UP)
    assert not changer.is_alive()
    assert report.outcome == "completed", report.message

    code, result = cli_json(schema_url, target, "ipam", "verify")
    assert code == 0 and result["clean"], result["differences"]
    if "error" in outcome:  # refused: the fence was up when it got there (503), nothing was allocated
        assert outcome["error"].type == "IpamMigrationInProgress"
        return
    address = outcome["port"]["fixed_ips"][0]["ip_address"]
    new = as_driver(schema_url, target)
    try:
        assert new.run(lambda u: type(u.addresses.driver).name) == target
        held = {ip for pairs in dataset.holdings(new).values() for _, ip in pairs}
        assert address in held
    finally:
        new.dispose()
