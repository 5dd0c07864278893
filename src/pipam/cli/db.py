"""``pipam db``: schema management."""

from __future__ import annotations

import typer

from pipam.cli.common import console, engine_for, friendly_errors, settings_of
from pipam.db import schema

app = typer.Typer(
    help="Database schema: upgrade to the newest revision, or show the current one.", no_args_is_help=True
)


@app.command()
@friendly_errors
def upgrade(ctx: typer.Context) -> None:
    """Bring the database to the newest schema (creates it when empty).

    A new database records the configured ipam_driver as its active IPAM backend.
    """
    settings = settings_of(ctx)
    engine = engine_for(settings)
    try:
        before, after = schema.upgrade(engine, settings.ipam_driver)
    finally:
        engine.dispose()
    if before == after:
        console.print(f"Database already at revision {after}.")
    else:
        console.print(f"Database upgraded from {before or 'empty'} to revision {after}.")


@app.command()
@friendly_errors
def current(ctx: typer.Context) -> None:
    """Print the database's schema revision and whether it is the newest."""
    engine = engine_for(settings_of(ctx))
    try:
        rev, head = schema.current_revision(engine), schema.head_revision(engine)
    finally:
        engine.dispose()
    state = "(head)" if rev == head else f"(behind: newest is {head}; run 'pipam db upgrade')"
    console.print(f"{rev or 'empty'} {state}")
    if rev != head:
        raise typer.Exit(1)
