"""``pipam serve``: the REST API under uvicorn."""

from __future__ import annotations

import errno
import os
import socket

import typer
import uvicorn

from pipam.api.logs import uvicorn_log_config
from pipam.cli.common import CONFIG, config_file, fail, friendly_errors, say, settings_of
from pipam.db import schema
from pipam.db.engine import make_engine
from pipam.service.bootstrap import require_current, upgrade_database


@friendly_errors
def serve(
    ctx: typer.Context,
    config: str | None = CONFIG,
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
    path = config_file(ctx)
    if path:
        os.environ["PIPAM_CONFIG"] = os.path.abspath(path)
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"PIPAM_{name}"] = str(value)
    settings = settings_of(ctx)
    _check_free(settings.host, settings.port)
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


def _check_free(host: str, port: int) -> None:
    """Say that the address is taken before the application starts: uvicorn binds only after its
    start-up (the log would say "startup complete" first, then fail)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"cannot listen on {host}:{port}: the port is already in use", code=2)
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code=2)
