"""List requests on the wire: query parameters in, ``<collection>_links`` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from pipam.errors import BadRequest
from pipam.service.listing import ListQuery

SPECIAL = {"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir"}
ALIASES = {"tenant_id": "project_id"}


def parse_query(items: Sequence[tuple[str, str]], cap: int) -> tuple[ListQuery, list[str]]:
    """The list query and the requested ``fields``; a ``limit`` above the page cap is capped, as Neutron does."""
    query = ListQuery(limit=cap)
    fields: list[str] = []
    keys: list[str] = []
    dirs: list[str] = []
    for key, value in items:
        if key == "fields":
            fields.extend(v for v in value.split(",") if v)
        elif key == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise BadRequest(f"Bad limit request: limit must be an integer, not '{value[:32]}'.") from None
            if limit < 0:
                raise BadRequest("Bad limit request: limit must not be negative.")
            query.limit = min(limit, cap) if limit else cap
        elif key == "marker":
            query.marker = value
        elif key == "page_reverse":
            query.page_reverse = value.lower() in ("true", "1")
        elif key == "sort_key":
            keys.append(value)
        elif key == "sort_dir":
            if value not in ("asc", "desc"):
                raise BadRequest(f"Bad sort request: sort_dir must be 'asc' or 'desc', not '{value[:32]}'.")
            dirs.append(value)
        else:
            query.filters.setdefault(key, []).append(value)
    if dirs and len(dirs) != len(keys):
        raise BadRequest("Bad sort request: the number of sort_dir and sort_key values must match.")
    query.sort = list(zip(keys, dirs or ["asc"] * len(keys), strict=True))
    return query, fields


def links(base_url: str, query: ListQuery, fields: list[str], ids: list[str], full: bool) -> list[dict[str, str]]:
    """``next`` while pages are full (a walk ends on a page without it), ``previous`` unless first."""
    if not ids:
        return []
    params: list[tuple[str, str]] = [(k, v) for k, vs in query.filters.items() for v in vs]
    params += [("fields", f) for f in fields]
    params += [p for k, d in query.sort for p in (("sort_key", k), ("sort_dir", d))]
    params.append(("limit", str(query.limit)))
    forward_more = full if not query.page_reverse else query.marker is not None
    backward_more = query.marker is not None if not query.page_reverse else full
    out = []
    if forward_more:
        out.append({"rel": "next", "href": f"{base_url}?{urlencode([*params, ('marker', ids[-1])])}"})
    if backward_more:
        prev = [*params, ("marker", ids[0]), ("page_reverse", "True")]
        out.append({"rel": "previous", "href": f"{base_url}?{urlencode(prev)}"})
    return out


def page_body(collection: str, items: list[dict[str, Any]], page_links: list[dict[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {collection: items}
    if page_links:
        body[f"{collection}_links"] = page_links
    return body
