"""The FastAPI application: routers, error mapping, body limits, request ids and the access log."""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipam import __version__
from pipam.api import discovery, errors, resources
from pipam.api.logs import configure_logging
from pipam.api.paths import NeutronPaths
from pipam.api.rendering import JsonResponse
from pipam.config import Settings, load_settings
from pipam.errors import HTTPRequestEntityTooLarge
from pipam.service.database import Database
from pipam.service.resources import discover
from pipam.service.startup import startup_report

log = logging.getLogger("pipam.api")
access_log = logging.getLogger("pipam.access")


class RequestGuard:
    """A pure ASGI middleware (no task or body copy per request): gives each request an id, refuses
    bodies over the limit while they stream in (a chunked body is never held whole), and writes one
    access-log line per request."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        too_large = f"Request body is larger than the limit of {self.max_body} bytes."
        seen = 0
        length = _header(scope, b"content-length")
        # A body the app answers without reading to its end (no token, too large) is not read on either:
        # the connection is closed after the answer instead of draining whatever the client still sends.
        unread = (length not in (None, "0")) or _header(scope, b"transfer-encoding") is not None

        async def limited_receive() -> Message:
            nonlocal seen, unread
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPRequestEntityTooLarge(too_large)
                unread = unread and message.get("more_body", False)
            return message

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                extra = [(b"x-openstack-request-id", request_id.encode())]
                if unread:
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                raise HTTPRequestEntityTooLarge(too_large)
            await self.app(scope, limited_receive, send_with_id)
        except HTTPRequestEntityTooLarge as exc:
            scope["state"]["error_type"] = exc.type
            response = errors.error_response(413, exc.type, exc.message)
            await response(scope, receive, send_with_id)
        except Exception:
            # A bug: its traceback is logged here, once, with the request it failed (uvicorn would log
            # it again without), and the client gets Neutron's 500 body with the request id.
            log.exception(
                "unhandled error",
                extra={"fields": {"request_id": request_id, "method": scope["method"], "path": scope["path"]}},
            )
            scope["state"]["error_type"] = errors.INTERNAL
            if status == 500 and not started:
                response = errors.error_response(500, errors.INTERNAL, "Request failed: internal server error")
                await response(scope, receive, send_with_id)
        finally:
            self._log(scope, request_id, status, time.perf_counter() - start)

    def _log(self, scope: Scope, request_id: str, status: int, took: float) -> None:
        state = scope.get("state", {})
        caller = state.get("caller")
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client")
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"] + (f"?{query}" if query else ""),
            "status": status,
            "duration_ms": round(took * 1000, 2),
            "client": f"{client[0]}:{client[1]}" if client else "",
            "project": caller.project_id if caller is not None else "",
        }
        if "error_type" in state:
            fields["error_type"] = state["error_type"]
        access_log.info("%s %s %s", scope["method"], scope["path"], status, extra={"fields": fields})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    database = Database(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Transactions run in the thread pool: allowed its default 40 threads, a burst went past the
        # connection pool and each connection beyond it was closed as it came back, a new database
        # session per request (bench/README.md, twenty-sixth round). Requests beyond it wait for a thread.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_connections
        yield
        database.dispose()  # a stopping worker closes its pooled connections

    app = FastAPI(
        lifespan=lifespan,
        title="Pipam",
        version=__version__,
        description="IP address management, OpenStack Networking v2.0 wire format.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        default_response_class=JsonResponse,
    )
    app.state.database = database
    errors.install(app, settings.retry_after)
    app.add_middleware(NeutronPaths)
    app.add_middleware(RequestGuard, max_body=settings.max_body_bytes)  # outermost: every answer is logged
    # The routes go onto the app's own router, not through include_router: since FastAPI 0.137 an
    # included router stays a node that each request scans route by route, twice (the match, then the
    # dispatch): an eighth of the instructions of a GET network inside the server (bench/README.md,
    # fifth round). A router's routes already carry its prefix, tags, dependencies and response class.
    for router in (discovery.router, *(resources.router_for(module) for module in discover())):
        app.router.routes.extend(router.routes)

    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from PIPAM_CONFIG / PIPAM_* variables."""
    app = create_app()
    database: Database = app.state.database
    for level, message in startup_report(database):
        log.log(level, "%s", message)
    # What exists now (modules, the app, SQLAlchemy's mappers and compiled statements) lives as long as the
    # process: keep it out of the cycle collector's passes, which otherwise rescan it while a request
    # builds thousands of objects (a 1,000-port list page spent about a fifth of its time there).
    gc.freeze()
    # A list page builds thousands of objects that all live until the answer is written, so Python's
    # default pass every 700 new objects frees nothing: every 10,000 took a 1,000-port page from 30.7 to
    # 25.6 ms in this server (47 to 24 ms without the freeze above); bench/README.md, third round.
    gc.set_threshold(10_000, 10, 10)
    return app
