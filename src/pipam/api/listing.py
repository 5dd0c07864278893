"""List requests: filters (repeated key = OR), fields, sorting, and limit/marker pagination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Boolean, Integer, and_, false, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from pipam.errors import BadRequest, NotFound
from pipam.service.common import Caller

SPECIAL = {"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir"}
TAG_FILTERS = {"tags", "tags-any", "not-tags", "not-tags-any"}
ALIASES = {"tenant_id": "project_id"}


@dataclass
class ListSpec:
    model: type
    collection: str
    render: Callable[[Any, Any], dict[str, Any]]  # (uow, row) -> wire dict
    extra_filters: dict[str, Callable[[list[str]], ColumnElement[bool]]] = field(default_factory=dict)
    shared_column: str | None = None


@dataclass
class Query:
    filters: dict[str, list[str]]
    fields: list[str]
    limit: int | None
    marker: str | None
    page_reverse: bool
    sort: list[tuple[str, str]]


def parse_query(items: Sequence[tuple[str, str]], cap: int) -> Query:
    filters: dict[str, list[str]] = {}
    fields: list[str] = []
    keys: list[str] = []
    dirs: list[str] = []
    limit: int | None = None
    marker = None
    reverse = False
    for key, value in items:
        if key == "fields":
            fields.extend(v for v in value.split(",") if v)
        elif key == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise BadRequest(f"Bad limit request: limit must be an integer, not '{value}'.") from None
            if limit < 0:
                raise BadRequest("Bad limit request: limit must not be negative.")
            if limit > cap:
                raise BadRequest(f"Bad limit request: limit {limit} exceeds the maximum page size {cap}.")
        elif key == "marker":
            marker = value
        elif key == "page_reverse":
            reverse = value.lower() in ("true", "1")
        elif key == "sort_key":
            keys.append(value)
        elif key == "sort_dir":
            if value not in ("asc", "desc"):
                raise BadRequest(f"Bad sort request: sort_dir must be 'asc' or 'desc', not '{value}'.")
            dirs.append(value)
        else:
            filters.setdefault(key, []).append(value)
    if dirs and len(dirs) != len(keys):
        raise BadRequest("Bad sort request: the number of sort_dir and sort_key values must match.")
    sort = list(zip(keys, dirs or ["asc"] * len(keys), strict=True))
    return Query(filters, fields, limit or cap, marker, reverse, sort)


def _convert(column: Any, key: str, value: str) -> Any:
    if isinstance(column.type, Boolean):
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise BadRequest(f"Invalid filter {key}={value}: not a boolean.")
    if isinstance(column.type, Integer):
        try:
            return int(value)
        except ValueError:
            raise BadRequest(f"Invalid filter {key}={value}: not an integer.") from None
    return value


def _columns(model: type) -> dict[str, Any]:
    return {c.key: c for c in model.__table__.columns if c.key != "tags"}  # type: ignore[attr-defined]


def _tag_match(kind: str, wanted: list[str], tags: list[str]) -> bool:
    names = {t for v in wanted for t in v.split(",") if t}
    have = set(tags)
    if kind == "tags":
        return names <= have
    if kind == "tags-any":
        return bool(names & have)
    if kind == "not-tags":
        return not names <= have
    return not names & have


def list_rows(
    session: Session, uow: Any, spec: ListSpec, query: Query, caller: Caller, base_url: str
) -> dict[str, Any]:
    model = spec.model
    columns = _columns(model)
    stmt: Select[Any] = select(model)
    if caller.restricted:
        visible = model.project_id == caller.project_id  # type: ignore[attr-defined]
        if spec.shared_column:
            visible = or_(visible, columns[spec.shared_column].is_(True))
        stmt = stmt.where(visible)
    tag_filters: dict[str, list[str]] = {}
    for key, values in query.filters.items():
        attr = ALIASES.get(key, key)
        if attr in columns:
            stmt = stmt.where(columns[attr].in_([_convert(columns[attr], key, v) for v in values]))
        elif key in spec.extra_filters:
            stmt = stmt.where(spec.extra_filters[key](values))
        elif key in TAG_FILTERS:
            tag_filters[key] = values
        else:
            raise BadRequest(f"[{key}] is invalid attribute for filtering")

    sort = [(ALIASES.get(k, k), d) for k, d in query.sort]
    for key, _ in sort:
        if key not in columns:
            raise BadRequest(f"Bad sort request: '{key}' is not a sortable attribute.")
    if not any(k == "id" for k, _ in sort):
        sort.append(("id", "asc"))
    if query.page_reverse:
        sort = [(k, "desc" if d == "asc" else "asc") for k, d in sort]
    stmt = stmt.order_by(*[columns[k].desc() if d == "desc" else columns[k].asc() for k, d in sort])

    if query.marker is not None:
        marker = session.get(model, query.marker) if len(query.marker) <= 36 else None
        if marker is None:
            raise NotFound(f"Marker {query.marker} could not be found.", type="MarkerNotFound")
        stmt = stmt.where(_after(columns, sort, marker))

    # Tag filters live in a JSON column: filtered here, so rows are read until the page is full.
    limit = query.limit or 0
    page: list[dict[str, Any]] = []
    more = False
    for row in session.scalars(stmt.execution_options(yield_per=500)):
        if tag_filters and not all(_tag_match(k, v, list(row.tags or [])) for k, v in tag_filters.items()):
            continue
        if len(page) == limit:
            more = True
            break
        page.append(spec.render(uow, row))
    if query.page_reverse:
        page.reverse()
    result: dict[str, Any] = {spec.collection: [_only(r, query.fields) for r in page]}
    links = _links(base_url, query, page, more)
    if links:
        result[f"{spec.collection}_links"] = links
    return result


def _after(columns: dict[str, Any], sort: list[tuple[str, str]], marker: Any) -> ColumnElement[bool]:
    """Rows strictly after ``marker`` in the sort order: (a > m.a) or (a = m.a and b > m.b) or ..."""
    clauses = []
    for i, (key, direction) in enumerate(sort):
        equal = [columns[k] == getattr(marker, k) for k, _ in sort[:i]]
        value = getattr(marker, key)
        beyond = columns[key] < value if direction == "desc" else columns[key] > value
        clauses.append(and_(*equal, beyond))
    return or_(*clauses) if clauses else false()


def _only(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in fields} if fields else row


def _links(base_url: str, query: Query, page: list[dict[str, Any]], more: bool) -> list[dict[str, str]]:
    if not page:
        return []
    params: list[tuple[str, str]] = [(k, v) for k, vs in query.filters.items() for v in vs]
    params += [("fields", f) for f in query.fields]
    params += [p for k, d in query.sort for p in (("sort_key", k), ("sort_dir", d))]
    params.append(("limit", str(query.limit)))
    links = []
    forward_more = more if not query.page_reverse else query.marker is not None
    backward_more = query.marker is not None if not query.page_reverse else more
    if forward_more:
        links.append({"rel": "next", "href": f"{base_url}?{urlencode([*params, ('marker', page[-1]['id'])])}"})
    if backward_more:
        prev = [*params, ("marker", page[0]["id"]), ("page_reverse", "True")]
        links.append({"rel": "previous", "href": f"{base_url}?{urlencode(prev)}"})
    return links
