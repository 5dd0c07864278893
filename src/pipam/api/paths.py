"""Request paths as Neutron reads them: a ``.json`` suffix names the format (pecan's
``guess_content_type_from_ext``: ``/v2.0/networks.json`` is ``/v2.0/networks``), and a NUL character,
which no id or tag holds and PostgreSQL cannot even compare, is a bad request."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from pipam.api import errors

SUFFIX = ".json"


class NeutronPaths:
    """A pure ASGI middleware that rewrites or refuses the path before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if "\x00" in path:
                scope.setdefault("state", {})["error_type"] = "HTTPBadRequest"
                response = errors.error_response(
                    400, "HTTPBadRequest", "Invalid input: the path holds a NUL character, which no id may hold."
                )
                await response(scope, receive, send)
                return
            if path.startswith("/v2.0/") and path.endswith(SUFFIX) and len(path) > len("/v2.0/") + len(SUFFIX):
                scope = dict(scope)
                scope["path"] = path.removesuffix(SUFFIX)
                raw = scope.get("raw_path")
                if raw is not None and raw.endswith(SUFFIX.encode()):
                    scope["raw_path"] = raw.removesuffix(SUFFIX.encode())
        await self.app(scope, receive, send)
