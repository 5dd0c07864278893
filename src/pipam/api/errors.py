"""Every error leaves the API as ``{"NeutronError": {"type", "message", "detail"}}``.

The status code of each error category is decided here, in one table; the ``type`` is the error
class's name (``pipam.errors``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InvalidRequestError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipam import errors as e
from pipam.db.engine import is_connection_lost

log = logging.getLogger("pipam.api")

STATUS: tuple[tuple[type[e.PipamError], int], ...] = (
    (e.BadRequest, 400),
    (e.NotAuthenticated, 401),
    (e.NotAuthorized, 403),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.PreconditionFailed, 412),
    (e.TooLarge, 413),
    (e.UnsupportedMediaType, 415),
    (e.Unavailable, 503),
    (e.ServerError, 500),
)

# Errors Starlette raises itself (unknown path, wrong method) keep Neutron's webob names.
HTTP_TYPES = {
    400: "HTTPBadRequest",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    406: "HTTPNotAcceptable",
    413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
}


INTERNAL = "HTTPInternalServerError"


def status_of(exc: e.PipamError) -> int:
    for category, status in STATUS:
        if isinstance(exc, category):
            return status
    return 500


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"NeutronError": {"type": type_, "message": message, "detail": ""}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI, retry_after: int) -> None:
    later = {"Retry-After": str(retry_after)}

    def respond(request: Request, exc: e.PipamError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500 and status != 503:
            log.error("server error: %s", exc.message)
        request.state.error_type = exc.type  # for the access log
        return error_response(status, exc.type, exc.message, later if status == 503 else None)

    @app.exception_handler(e.PipamError)
    async def pipam_error(request: Request, exc: e.PipamError) -> JSONResponse:
        return respond(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "The resource could not be found."
        request.state.error_type = HTTP_TYPES.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, request.state.error_type, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        request.state.error_type = "HTTPBadRequest"
        return error_response(400, "HTTPBadRequest", f"Invalid input for {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # Raised outside a transaction (a connection lost while a session closes, say).
        if is_connection_lost(exc) or isinstance(exc, InvalidRequestError):
            return respond(request, e.DatabaseUnavailable())
        # The database refused a statement (DBAPIError); any other SQLAlchemy error is Pipam's own bug
        # in how it built one, and is not blamed on the database.
        label = "database error" if isinstance(exc, DBAPIError) else "internal error"
        log.exception(label, extra={"fields": {"request_id": getattr(request.state, "request_id", "")}})
        request.state.error_type = INTERNAL
        return error_response(500, INTERNAL, "Request failed: internal server error")

    # Any other exception is a bug: pipam.api.app.RequestGuard logs it with its request and answers 500.
