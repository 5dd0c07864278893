"""Bringing a database to the schema this code needs, and saying whether it is there."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from pipam.db import schema
from pipam.db.transactions import Runner
from pipam.errors import DatabaseNotReady
from pipam.ipam import state
from pipam.ipam.registry import load_driver, schema_locations


@dataclass(frozen=True)
class SchemaStatus:
    current: set[str]
    heads: set[str]

    @property
    def is_current(self) -> bool:
        return self.current == self.heads

    def describe(self) -> str:
        if self.is_current:
            return f"{schema.describe(self.current)} (head)"
        return (
            f"{schema.describe(self.current)} (behind: newest is {schema.describe(self.heads)}; run 'pipam db upgrade')"
        )


def schema_status(engine: Engine) -> SchemaStatus:
    return SchemaStatus(schema.current_revisions(engine), schema.head_revisions(engine, schema_locations()))


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not the newest, with the command that fixes it."""
    status = schema_status(engine)
    if not status.current:
        raise DatabaseNotReady("the database has no Pipam schema")
    if not status.is_current:
        raise DatabaseNotReady(
            f"the database is at schema revision {schema.describe(status.current)}, not {schema.describe(status.heads)}"
        )


def upgrade_database(engine: Engine, initial_backend: str) -> tuple[set[str], set[str]]:
    """Upgrade the core schema and every installed driver's tables; a new database records
    ``initial_backend`` as its active IPAM backend (which must be installed)."""
    runner = Runner(engine)
    if not (schema.current_revisions(engine) and runner.run(lambda tx: state.recorded(tx.session), write=False)):
        load_driver(initial_backend)  # never record a backend that no server could allocate through
    before, after = schema.upgrade(engine, schema_locations())
    runner.run(lambda tx: state.initialise(tx.session, initial_backend))
    return before, after
