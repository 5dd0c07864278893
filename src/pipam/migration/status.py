"""``pipam ipam status``: the active backend, the fence, the migration (running or interrupted) and the
stale data other backends hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from pipam.config import Settings
from pipam.db.transactions import Runner, Transaction
from pipam.ipam import state
from pipam.ipam.interface import DriverContext
from pipam.ipam.registry import available_drivers, driver_settings, load_driver


def _migration(tx: Transaction, mig: Any) -> dict[str, Any]:
    alive = mig.status == "running" and state.lease_alive(tx.session, mig)
    return {
        "id": mig.id,
        "source": mig.source,
        "target": mig.target,
        "status": ("running" if alive else "interrupted") if mig.status == "running" else mig.status,
        "phase": mig.phase,
        "subnets_done": mig.subnets_done,
        "allocations_done": mig.allocations_done,
        "owner": mig.owner,
        "started_at": mig.started_at,
        "last_heartbeat": mig.heartbeat_at,
        "finished_at": mig.finished_at,
        "error": mig.error,
    }


def status(engine: Engine, settings: Settings) -> dict[str, Any]:
    def run(tx: Transaction) -> dict[str, Any]:
        current = state.read(tx.session)
        last = state.last(tx.session)
        stale: dict[str, Any] = {}
        for name in available_drivers():
            if name == current.active:
                continue
            try:
                cls = load_driver(name)
                ctx = DriverContext(tx.session, driver_settings(cls, settings.drivers), tx.on_rollback)
                stale[name] = cls(ctx).counts()
            except Exception as exc:  # a driver that cannot answer must not hide the others
                stale[name] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        return {
            "active_backend": current.active,
            "migrating_to": current.shadow,
            "journal_pending": state.journal_pending(tx.session) if current.shadow else 0,
            "fence": {"migration_id": current.fence, "reason": current.fence_reason} if current.fence else None,
            "last_migration": None if last is None else _migration(tx, last),
            "stale_data": stale,
        }

    return Runner(engine, settings.db_retries).run(run, write=False)
