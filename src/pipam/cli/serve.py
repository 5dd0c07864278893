"""``pipam serve``: the REST API under uvicorn."""

from __future__ import annotations

import os

import typer
import uvicorn

from pipam.api.logs import uvicorn_log_config
from pipam.cli.common import fail, friendly_errors, say, settings_of
from pipam.db import schema
from pipam.db.engine import make_engine
from pipam.service.bootstrap import require_current, upgrade_database


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
    engine = make_engine(settings.database_url)
    try:
        if not schema.current_revisions(engine) and engine.url.get_backend_name() == "sqlite":
            upgrade_database(engine, settings.ipam_driver)
            say(f"Created database {engine.url.database} (IPAM backend {settings.ipam_driver!r}).")
        require_current(engine)
    finally:
        engine.dispose()
    # Workers are separate processes: they read the same settings from the same file and variables.
    config = (ctx.find_root().obj or {}).get("config")
    if config:
        os.environ["PIPAM_CONFIG"] = os.path.abspath(config)
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"PIPAM_{name}"] = str(value)
    settings = settings_of(ctx)
    if settings.workers < 1:
        fail("workers must be at least 1", code=2)
    uvicorn.run(
        "pipam.api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,
    )
