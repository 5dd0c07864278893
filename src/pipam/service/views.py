"""Rows as shows and lists read them: Core selects into light, read-only views.

A show or a list page only reads, yet loading ORM instances (identity map, instrumentation, change
tracking) cost twice what the rows do: a page of 1,000 ports and their addresses took 19 ms as
instances and 8.5 ms as rows. A view is a named tuple of the mapped class's attributes, with each
relationship rendering reads as a list of named tuples of the related class's attributes, so rendering
and policy read a view exactly as they read an instance. Changes still load instances.

The views come from the mapping itself (its column attributes, its relationships' join columns and
ordering): a new attribute or relationship needs nothing here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import JSON, Connection, DateTime, String, any_, bindparam, func, inspect, select, type_coerce
from sqlalchemy.orm import Mapper, RelationshipProperty
from sqlalchemy.sql import ColumnElement, Select

from pipam.db.models import READ_AS_TEXT
from pipam.service.attributes import Resource

# Parents per IN list when a page's relationships are loaded (SQLAlchemy's selectin loader uses 500 too).
CHUNK = 500


def _columns(mapper: Mapper[Any]) -> tuple[list[str], list[ColumnElement[Any]]]:
    """The mapped class's column attributes: their names, and their expressions labelled by them."""
    attrs = list(mapper.column_attrs)
    return [a.key for a in attrs], [_as_read(a.expression).label(a.key) for a in attrs]


def _as_read(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A timestamp or a JSON value (tags) as the driver gives it.

    SQLite keeps a timestamp as text, which rendering slices into its wire form (``Timestamp``) for a
    third of the cost of parsing it into a datetime and formatting that again, two per row of a list
    page. The other drivers give datetimes either way (String has no result processor there).

    A JSON column marked ``READ_AS_TEXT`` (tags) is text on SQLite and MariaDB, which rendering parses
    (``Tags``) only when it is not an empty list: SQLAlchemy's processor made three calls per row to
    parse every value. psycopg gives PostgreSQL's json already parsed."""
    as_text = isinstance(column.type, DateTime) or (isinstance(column.type, JSON) and column.info.get(READ_AS_TEXT))
    return type_coerce(column, String()) if as_text else column


def _key_of(mapper: Mapper[Any], column: Any) -> str:
    """The name of the mapper's attribute that maps ``column``."""
    key = next((a.key for a in mapper.column_attrs if column in a.columns), None)
    if key is None:
        raise TypeError(f"{mapper.class_.__name__}: a view needs {column} mapped as an attribute")
    return key


def _tuple_class(name: str, fields: Sequence[str]) -> type[tuple[Any, ...]]:
    return NamedTuple(name, [(f, Any) for f in fields])  # type: ignore[return-value]


class _Relation:
    """One relationship a view carries: how to load it for many parents, or join it to one."""

    def __init__(self, parent: type, name: str) -> None:
        prop: RelationshipProperty[Any] = inspect(parent).relationships[name]
        if len(prop.local_remote_pairs or ()) != 1:
            raise TypeError(f"{parent.__name__}.{name}: a view joins a relationship on one column")
        ((local, remote),) = prop.local_remote_pairs or ()
        child = prop.mapper
        names, self.columns = _columns(child)
        self.name = name
        self.make = _tuple_class(f"{child.class_.__name__}View", names)
        self.local_key = _key_of(inspect(parent), local)
        self.join = prop.primaryjoin
        self.table = child.local_table
        self.order_by = list(prop.order_by or ())
        # A show joins the children: rows without one (an outer join's NULLs) and repeats are skipped.
        self.identity = [names.index(_key_of(child, pk)) for pk in child.primary_key]
        # A list page groups the children by their join column, which is one of their own attributes.
        self._parent_at = names.index(_key_of(child, remote))
        # Its statement is built once: building it per chunk, and coercing each of its 500 keys into a
        # bound literal, cost a sixth of loading a page's addresses.
        keys = bindparam("parent_keys", expanding=True)
        self._of_parents = select(*self.columns).where(remote.in_(keys)).order_by(*self.order_by)
        self._remote = remote

    def by_parent(self, conn: Connection, keys: list[Any]) -> dict[Any, list[tuple[Any, ...]]]:
        """The children of these parents, grouped by the parent's join column, in the relationship's order."""
        found: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
        for start in range(0, len(keys), CHUNK):
            self._group(conn.execute(self._of_parents, {"parent_keys": keys[start : start + CHUNK]}).all(), found)
        return found

    def of_page(self, conn: Connection, parents: Select[Any]) -> dict[Any, list[tuple[Any, ...]]]:
        """``by_parent`` of the parents' keys that ``parents`` (one column) selects, read with it in the
        database: no bound parameter per key (SQLAlchemy renders 1,000 of them for a page, which cost
        more than reading the children)."""
        if conn.dialect.name == "postgresql":
            # The keys as one array, each looked up in the children's index. Joined to the page instead,
            # PostgreSQL hashed it and scanned every child row: a page's addresses took 24-35 ms over
            # 103,500 ports against 6 ms at 10,000; looked up, 5-6 ms and 4 ms.
            keys = any_(func.array(parents.scalar_subquery()))
            stmt = select(*self.columns).where(self._remote == keys).order_by(*self.order_by)
        else:
            # SQLite and MariaDB walk the page and look each key up in the children's index.
            page = parents.subquery()
            stmt = select(*self.columns).join_from(self.table, page, self._remote == page.c[0])
            stmt = stmt.order_by(*self.order_by)
        found: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
        self._group(conn.execute(stmt).all(), found)
        return found

    def _group(self, rows: Iterable[Sequence[Any]], found: dict[Any, list[tuple[Any, ...]]]) -> None:
        """Views of child rows, appended to their parent's list in ``found`` (rows keep their order)."""
        make, at = self.make._make, self._parent_at  # type: ignore[attr-defined]
        for row in rows:
            found[row[at]].append(make(row))


class ViewLoader:
    """Views of one resource's rows and the relationships its rendering reads."""

    def __init__(self, resource: Resource) -> None:
        model = resource.model
        names, self.columns = _columns(inspect(model))
        self.relations = [_Relation(model, name) for name in resource.related]
        self._read_by = resource.related  # relationship -> the attributes that read it
        self._local_at = [names.index(r.local_key) for r in self.relations]  # each one's join column in a row
        self.make = _tuple_class(f"{model.__name__}View", [*names, *(r.name for r in self.relations)])
        self._width = len(names)
        self._one = self._show_statement(model)

    def select(self) -> Select[Any]:
        """The rows' columns, for a list to add its filters, order and limit to."""
        return select(*self.columns)

    def complete(
        self,
        conn: Connection,
        rows: Iterable[Sequence[Any]],
        fields: Collection[str] = (),
        page: Select[Any] | None = None,
    ) -> list[Any]:
        """Views of rows of ``select()``, with their relationships loaded for all of them at once: those
        an attribute in ``fields`` reads (all when ``fields`` is empty). One left out is None, not an
        empty list, so a reader that still reads it fails instead of showing nothing.

        ``page`` is the statement that selected exactly ``rows``, when one did and it is cheap to run
        again: the children are then read by joining to it, instead of by the rows' keys."""
        rows = list(rows)
        make = self.make._make  # type: ignore[attr-defined]
        if not self.relations:
            return [make(row) for row in rows]
        # Each relationship's lists for all the rows, then joined to the rows: a column at a time costs
        # less than a generator per row.
        columns: list[list[Any]] = []
        for relation, local in zip(self.relations, self._local_at, strict=True):
            if fields and not any(name in fields for name in self._read_by[relation.name]):
                columns.append([None] * len(rows))
                continue
            if page is not None:
                found = relation.of_page(conn, page.with_only_columns(self.columns[local]))
            else:
                found = relation.by_parent(conn, list(dict.fromkeys(row[local] for row in rows)))
            columns.append([found.get(row[local], []) for row in rows])
        return [make((*row, *extra)) for row, extra in zip(rows, zip(*columns, strict=True), strict=True)]

    def show(self, conn: Connection, item_id: str) -> Any:
        """One row's view, its relationships joined in the same statement; None when there is no such row."""
        rows = conn.execute(self._one, {"item_id": item_id}).all()
        if not rows:
            return None
        children: list[list[tuple[Any, ...]]] = []
        start = self._width
        for relation in self.relations:
            end = start + len(relation.columns)
            seen: set[tuple[Any, ...]] = set()
            items = []
            for row in rows:
                child = row[start:end]
                identity = tuple(child[i] for i in relation.identity)
                if all(v is None for v in identity) or identity in seen:
                    continue
                seen.add(identity)
                items.append(relation.make._make(child))  # type: ignore[attr-defined]
            children.append(items)
            start = end
        return self.make._make((*rows[0][: self._width], *children))  # type: ignore[attr-defined]

    def _show_statement(self, model: type) -> Select[Any]:
        """The row outer-joined to each relationship, built once (building per request cost a third of a show)."""
        stmt = select(*self.columns, *(c for r in self.relations for c in r.columns))
        for relation in self.relations:
            stmt = stmt.outerjoin(relation.table, relation.join)
        stmt = stmt.where(model.id == bindparam("item_id"))  # type: ignore[attr-defined]
        return stmt.order_by(*(o for r in self.relations for o in r.order_by))


_LOADERS: dict[str, ViewLoader] = {}


def views_of(resource: Resource) -> ViewLoader:
    if resource.singular not in _LOADERS:
        _LOADERS[resource.singular] = ViewLoader(resource)
    return _LOADERS[resource.singular]
