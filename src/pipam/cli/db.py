"""``pipam db``: schema management."""

from __future__ import annotations

import typer

from pipam.cli.common import CONFIG, fail, friendly_errors, say, settings_of
from pipam.db import schema
from pipam.db.engine import make_engine
from pipam.ipam.registry import available_drivers
from pipam.service.bootstrap import schema_status, upgrade_database

app = typer.Typer(
    help="Database schema: upgrade to the newest revision, or show the current one.", no_args_is_help=True
)


@app.command()
@friendly_errors
def upgrade(ctx: typer.Context, config: str | None = CONFIG) -> None:
    """Bring the database to the newest schema (creates it when empty), the core tables and every
    installed IPAM driver's own tables.

    A new database records the configured ipam_driver as its active IPAM backend.
    """
    settings = settings_of(ctx)
    if settings.ipam_driver not in available_drivers():
        # Even on a database that already records its backend: the setting is wrong, and a server
        # pinned to it (pin_ipam_driver) would refuse every address change.
        fail(
            f"ipam_driver {settings.ipam_driver!r} is not installed; installed drivers: "
            f"{', '.join(available_drivers()) or 'none'}",
            code=2,
        )
    engine = make_engine(settings.database_url)
    try:
        before, after = upgrade_database(engine, settings.ipam_driver)
    finally:
        engine.dispose()
    if before == after:
        say(f"Database already at revision {schema.describe(after)}.")
    else:
        say(f"Database upgraded from {schema.describe(before)} to revision {schema.describe(after)}.")


@app.command()
@friendly_errors
def current(ctx: typer.Context, config: str | None = CONFIG) -> None:
    """Print the database's schema revision and whether it is the newest (exit 1 when it is not)."""
    engine = make_engine(settings_of(ctx).database_url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    say(status.describe())
    if not status.is_current:
        raise typer.Exit(1)
