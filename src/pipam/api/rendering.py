"""Domain objects in the wire format, from their resource's definition."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from starlette.responses import Response

from pipam.service.attributes import Resource
from pipam.service.policy import ADMIN, Caller


def render(resource: Resource, obj: Any, fields: Collection[str] = (), caller: Caller = ADMIN) -> dict[str, Any]:
    """The visible attributes of ``obj`` (only ``fields`` when given), as Neutron shows them to ``caller``."""
    return resource.wire_values(obj, caller, fields)


def render_many(
    resource: Resource, objs: Sequence[Any], fields: Collection[str] = (), caller: Caller = ADMIN
) -> list[dict[str, Any]]:
    """``render`` of each of ``objs``, in order: a list page's rows, a bulk create's resources."""
    return resource.wire_page(objs, caller, fields)


class JsonResponse(Response):
    """JSON with orjson. Endpoints return it themselves, which also skips FastAPI's ``jsonable_encoder``
    walk: what ``render`` builds is already plain JSON data (str, int, bool, None, lists, dicts)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits (IPv6 address counts)
            return json.dumps(content, separators=(",", ":")).encode()
