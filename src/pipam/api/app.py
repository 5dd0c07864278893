"""The FastAPI application: routers, error mapping, limits, auth and request logging."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from pipam import __version__
from pipam.api import discovery, errors, resources
from pipam.api.errors import error_response
from pipam.config import Settings, load_settings
from pipam.db import schema
from pipam.db.models import IpamState
from pipam.ipam.registry import load_driver
from pipam.service.database import Database

log = logging.getLogger("pipam.api")
access_log = logging.getLogger("pipam.access")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: what log shippers parse without configuration."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("pipam")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class Limits(BaseHTTPMiddleware):
    """Request id, body-size cap and one structured access-log line per request."""

    def __init__(self, app: Any, max_body: int) -> None:
        super().__init__(app)
        self.max_body = max_body

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = f"req-{uuid.uuid4()}"
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            response: Response = error_response(
                413, "HTTPRequestEntityTooLarge", f"Request body is larger than the limit of {self.max_body} bytes."
            )
        elif length is None and request.method in ("POST", "PUT") and len(await request.body()) > self.max_body:
            response = error_response(
                413, "HTTPRequestEntityTooLarge", f"Request body is larger than the limit of {self.max_body} bytes."
            )
        else:
            response = await call_next(request)
        response.headers["X-Openstack-Request-Id"] = request_id
        access_log.info(
            "%s %s %s",
            request.method,
            request.url.path,
            response.status_code,
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                    "project": request.headers.get("x-project-id", ""),
                }
            },
        )
        return response


def check_startup(database: Database) -> None:
    """Say at start-up what an operator must know: old schema, deprecated or mismatched backend."""
    driver = load_driver(database.driver_name)
    if driver.deprecated:
        log.warning(
            "IPAM driver %r is deprecated; migrate with 'pipam ipam migrate --to internal'", database.driver_name
        )
    if not schema.is_current(database.engine):
        log.error("database schema is not current; run 'pipam db upgrade'")
        return
    with database.session(write=False) as session:
        state = session.scalar(select(IpamState).where(IpamState.id == 1))
    if state is not None and state.active_backend != database.driver_name:
        log.error(
            "configured ipam_driver %r differs from the database's active backend %r: address changes will be "
            "refused with 503 until they agree (set ipam_driver = %r, or run 'pipam ipam migrate --to %s')",
            database.driver_name,
            state.active_backend,
            state.active_backend,
            database.driver_name,
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    database = Database(settings)
    app = FastAPI(
        title="Pipam",
        version=__version__,
        description="IP address management, OpenStack Networking v2.0 wire format.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.database = database
    errors.install(app)
    app.add_middleware(Limits, max_body=settings.max_body_bytes)
    app.include_router(discovery.router)
    for res in resources.RESOURCES:
        app.include_router(resources.router_for(res))

    @app.on_event("shutdown")
    def _dispose() -> None:
        database.dispose()

    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from PIPAM_CONFIG / PIPAM_* variables."""
    app = create_app()
    check_startup(app.state.database)
    return app
