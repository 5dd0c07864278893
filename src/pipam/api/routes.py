"""The route class of the resource endpoints: documented by FastAPI, served without its per-request work."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Match, get_route_path
from starlette.types import Receive, Scope, Send


class DirectRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is called with the request and the path's parameters, as text.

    FastAPI still reads the endpoint's signature once, for the OpenAPI document. Per request, its own
    handler solves the endpoint's dependencies, validates its parameters, wraps what it returns, and
    opens two exit stacks for dependencies with ``yield``: work a resource endpoint does not need,
    since it takes only text from the path and the request, reads its own body, and returns its own
    ``Response``. Errors still reach the app's handlers, through its exception middleware. Skipping
    that work took a ``GET`` of a network inside the server from 1.320 M to 1.166 M instructions
    (bench/README.md, eleventh round).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.max_body_size is not None:
            # FastAPI enforces it in the layer replaced below: refused here rather than dropped unseen.
            raise ValueError(f"{path}: a DirectRoute has no body limit of its own; RequestGuard limits every body")
        handle = self.get_route_handler()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handle(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app
        # Every path this route matches starts with the text before its first parameter.
        self._fixed_start = self.path_format.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # A request is offered to each route in turn until one matches: a prefix test refuses the other
        # resources' routes for less than their regular expression and FastAPI's lookups do (a port
        # request passes 29 routes first, a network's 17).
        if scope["type"] == "http" and not get_route_path(scope).startswith(self._fixed_start):
            return Match.NONE, {}
        return super().matches(scope)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response = await endpoint(request=request, **request.path_params)
            if not isinstance(response, Response):  # a new endpoint that returns data: a bug, said at once
                raise TypeError(f"{self.path}: a DirectRoute endpoint must return a Response, not {type(response)}")
            return response

        return handle
