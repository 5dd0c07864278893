"""Lists: filters (a repeated key is OR), sort keys and keyset pagination, from a resource's definition.

Pagination walks a total order: the requested sort keys, then ``id``. NULLs come first in ascending
order and last in descending order on every database (each database has its own default), and the
"after the marker" condition treats them the same way, so that walking any key in either direction
returns every row exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, false, literal, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from pipam.db.transactions import Transaction
from pipam.errors import BadRequest, HTTPBadRequest, InvalidInput, MarkerNotFound
from pipam.service.attributes import Invalid, Resource, Tags
from pipam.service.policy import Caller, can_read, visible_clause
from pipam.service.views import views_of

TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
_TAGS = Tags()  # reads a row's tags as rendering does: a view holds them as stored


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    limit: int = 1000
    marker: str | None = None
    page_reverse: bool = False
    sort: list[tuple[str, str]] = field(default_factory=list)  # (attribute, "asc" | "desc")


@dataclass
class Page:
    items: list[Any]
    full: bool  # the page holds ``limit`` rows: a client walking the list asks for the next one


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


def _where(resource: Resource, filters: dict[str, list[str]]) -> tuple[list[ColumnElement[bool]], dict[str, list[str]]]:
    allowed = resource.filters()
    clauses: list[ColumnElement[bool]] = []
    tags: dict[str, list[str]] = {}
    for key, values in filters.items():
        if key in TAG_FILTERS:
            tags[key] = values
        elif key in resource.extra_filters:
            clauses.append(resource.extra_filters[key](values))
        elif key in allowed:
            attr = allowed[key]
            column = getattr(resource.model, attr.column_name)
            try:
                parsed = [attr.kind.parse_filter(v) for v in values]
            except Invalid as exc:
                raise InvalidInput(f"Invalid input for {key}. Reason: {exc}.") from None
            real = [v for v in parsed if v is not None]
            clause = column.in_(real) if real else false()
            if len(real) != len(parsed):
                clause = or_(clause, column.is_(None))
            clauses.append(clause)
        else:
            raise HTTPBadRequest(f"[{key}] is invalid attribute for filtering")
    return clauses, tags


def _order(resource: Resource, query: ListQuery) -> list[tuple[Any, bool]]:
    """(column, descending) in walking order: the requested keys, then id."""
    keys = resource.sort_keys()
    order: list[tuple[Any, bool]] = []
    seen = set()
    for name, direction in query.sort:
        if name not in keys:
            raise BadRequest(f"Bad sort request: '{name}' is not a sortable attribute.")
        column = getattr(resource.model, keys[name].column_name)
        if column.key not in seen:
            order.append((column, direction == "desc"))
            seen.add(column.key)
    if "id" not in seen:
        order.append((resource.model.id, False))  # type: ignore[attr-defined]
    if query.page_reverse:
        order = [(c, not d) for c, d in order]
    return order


def _nullable(column: Any) -> bool:
    return bool(getattr(column, "nullable", True)) and not getattr(column, "primary_key", False)


def _order_by(order: list[tuple[Any, bool]]) -> list[Any]:
    out: list[Any] = []
    for column, desc in order:
        if _nullable(column):
            # NULLs first going up, last going down, whatever the database's own default.
            out.append(column.is_(None).asc() if desc else column.is_(None).desc())
        out.append(column.desc() if desc else column.asc())
    return out


def _same(column: Any, value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _beyond(column: Any, desc: bool, value: Any) -> ColumnElement[bool]:
    """Rows strictly after ``value`` in this column's walking order."""
    if value is None:
        # NULL is the first value going up (everything non-NULL follows) and the last going down.
        return false() if desc else column.is_not(None)
    if isinstance(value, bool):
        value = literal(value)  # SQLAlchemy refuses < and > with a bare True/False
    if desc:
        after = column < value
        return or_(after, column.is_(None)) if _nullable(column) else after
    return column > value


def _after(order: list[tuple[Any, bool]], marker: Any) -> ColumnElement[bool]:
    """(a beyond m.a) or (a = m.a and b beyond m.b) or ..."""
    clauses = []
    for i, (column, desc) in enumerate(order):
        equal = [_same(c, getattr(marker, c.key)) for c, _ in order[:i]]
        clauses.append(and_(*equal, _beyond(column, desc, getattr(marker, column.key))))
    return or_(*clauses)


def list_items(
    tx: Transaction,
    resource: Resource,
    query: ListQuery,
    caller: Caller,
    extra: ColumnElement[bool] | None = None,
    fields: Collection[str] = (),
) -> Page:
    """A page of the resource's rows as read-only views (``pipam.service.views``), with what rendering
    reads of their relationships (only what ``fields`` shows, when given); the session is opened only
    to look a marker up."""
    views = views_of(resource)
    clauses, tag_filters = _where(resource, query.filters)
    visible = visible_clause(caller, resource)
    if visible is not None:
        clauses.append(visible)
    if extra is not None:
        clauses.append(extra)
    order = _order(resource, query)
    stmt: Select[Any] = views.select().where(*clauses).order_by(*_order_by(order))
    if query.marker is not None:
        marker = _marker(tx.session, resource, query.marker, caller)
        stmt = stmt.where(_after(order, marker))
    limit = query.limit
    conn = tx.connection
    page: Select[Any] | None = None
    if not tag_filters:
        rows = conn.execute(stmt.limit(limit)).all()
        if not query.filters and not query.sort and extra is None:
            # Walking the primary key to the page again is cheap; a filter or a sort could mean
            # scanning or sorting the table twice, where the rows' keys cost the same whatever they are.
            page = stmt.limit(limit)
    else:
        # Tags live in a JSON column: filtered here, reading on until the page is full.
        # The stream is closed before the page's relationships are read on the same connection.
        rows = []
        with tx.stream(stmt) as stream:
            for row in stream:
                if all(_tag_match(k, v, _TAGS.wire(row.tags)) for k, v in tag_filters.items()):
                    rows.append(row)
                    if len(rows) == limit:
                        break
    items = views.complete(conn, rows, fields, page)
    full = len(items) == limit
    if query.page_reverse:
        items.reverse()
    return Page(items, full)


def _marker(session: Session, resource: Resource, marker_id: str, caller: Caller) -> Any:
    """A marker the caller may not see behaves exactly like one that does not exist."""
    obj = session.get(resource.model, marker_id) if len(marker_id) <= 36 and "\x00" not in marker_id else None
    if obj is None or not can_read(session, caller, resource, obj):
        raise MarkerNotFound(f"Marker {marker_id[:64]} could not be found.")
    return obj


FilterBuilder = Callable[[list[str]], ColumnElement[bool]]
