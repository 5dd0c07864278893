"""Schema upgrades through Alembic: the core revisions shipped here, plus each driver's own branch.

The callers pass the drivers' revision folders in (``pipam.ipam.registry.schema_locations``), so the
core schema knows no driver.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine, locations: Sequence[Path] = ()) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join([str(MIGRATIONS / "versions"), *map(str, locations)]))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revisions(engine: Engine, locations: Sequence[Path] = ()) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(engine, locations)).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine, locations: Sequence[Path] = ()) -> tuple[set[str], set[str]]:
    """Bring the core schema and every driver branch to their newest revisions."""
    before = current_revisions(engine)
    cfg = alembic_config(engine, locations)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
    return before, current_revisions(engine)


def describe(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions)) or "empty"
