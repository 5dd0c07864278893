"""Every error leaves the API as ``{"NeutronError": {"type", "message", "detail"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InvalidRequestError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipam.db.engine import is_connection_lost
from pipam.errors import PipamError, ServiceUnavailable

log = logging.getLogger("pipam.api")

HTTP_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    409: "HTTPConflict",
    413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
    503: "HTTPServiceUnavailable",
}


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"NeutronError": {"type": type_, "message": message, "detail": ""}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(PipamError)
    async def pipam_error(_: Request, exc: PipamError) -> JSONResponse:
        headers = None
        if isinstance(exc, ServiceUnavailable):
            headers = {"Retry-After": str(exc.retry_after)}
        if exc.status >= 500 and not isinstance(exc, ServiceUnavailable):
            log.error("server error: %s", exc.message)
        return error_response(exc.status, exc.type, exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "The resource could not be found."
        return error_response(exc.status_code, HTTP_TYPES.get(exc.status_code, "HTTPError"), message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "HTTPBadRequest", f"Invalid input for {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        # Raised outside a unit of work (a lost connection while a session closes, say).
        if is_connection_lost(exc) or isinstance(exc, InvalidRequestError):
            return error_response(
                503, "DatabaseUnavailable", "The database is unavailable; try again shortly.", {"Retry-After": "5"}
            )
        log.exception("database error")
        return error_response(500, "HTTPInternalServerError", "Request failed: internal server error")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "HTTPInternalServerError", "Request failed: internal server error")
