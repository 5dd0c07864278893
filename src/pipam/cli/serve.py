"""``pipam serve``: the REST API under uvicorn."""

from __future__ import annotations

import os

import typer
import uvicorn

from pipam.cli.common import console, engine_for, friendly_errors, settings_of
from pipam.db import schema


@friendly_errors
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to listen on (setting: host, default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (setting: port, default 9696)."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes (setting: workers, default 1)."),
) -> None:
    """Serve the REST API (OpenStack Networking v2.0 wire format).

    An empty SQLite database (the embedded default) is created on first start; any other database
    must be brought to the newest schema with 'pipam db upgrade' first.
    """
    settings = settings_of(ctx)
    engine = engine_for(settings)
    try:
        current = schema.current_revision(engine)
        if current is None and engine.url.get_backend_name() == "sqlite":
            schema.upgrade(engine, settings.ipam_driver)
            console.print(f"Created database {engine.url.database} (IPAM backend {settings.ipam_driver!r}).")
        elif current != schema.head_revision(engine):
            raise typer.BadParameter(
                f"database schema is at {current or 'nothing'}, not the newest; run 'pipam db upgrade' first"
            )
    finally:
        engine.dispose()
    # Workers are separate processes: they read the same settings from the same file and variables.
    config = ctx.find_root().obj.get("config")
    if config:
        os.environ["PIPAM_CONFIG"] = os.path.abspath(config)
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"PIPAM_{name}"] = str(value)
    settings = settings_of(ctx)
    uvicorn.run(
        "pipam.api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
