"""Per-request context: the process's Database and who is calling."""

from __future__ import annotations

from fastapi import Request

from pipam.errors import PipamError
from pipam.service.common import Caller
from pipam.service.database import Database


class Unauthorized(PipamError):
    status = 401
    type = "HTTPUnauthorized"


def database_of(request: Request) -> Database:
    return request.app.state.database


def caller_of(request: Request) -> Caller:
    """No token configured: anyone, scoped by X-Project-Id. Otherwise the token decides."""
    settings = database_of(request).settings
    header_project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id") or ""
    if not settings.api_token and not settings.project_tokens:
        return Caller(project_id=header_project)
    token = request.headers.get("x-auth-token")
    if token and settings.api_token and token == settings.api_token:
        return Caller(project_id=header_project)
    if token and token in settings.project_tokens:
        return Caller(project_id=settings.project_tokens[token], restricted=True)
    raise Unauthorized("Authentication required: send a valid X-Auth-Token.")
