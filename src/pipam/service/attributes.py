"""Resource definitions: one attribute map per resource, from which everything else is derived.

Like Neutron's attribute maps, each attribute says whether a client may set it on create or update,
its default, how its value is validated and converted, whether lists can filter or sort by it, and
how it appears on the wire. The service validates requests with it (``Resource.create_request`` /
``update_request``), listing derives its filters and sort keys from it, the API renders bodies and
documents the OpenAPI schema from it. Adding an attribute is one line here.
"""

from __future__ import annotations

import ipaddress
import operator
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, cached_property
from itertools import repeat
from typing import Any

import netaddr

from pipam.db.engine import json_loads
from pipam.errors import HTTPBadRequest, InvalidInput, NotFound

MISSING: Any = object()


class Invalid(ValueError):
    """A value failed validation: "Invalid input for X. Reason: ..." (HTTPBadRequest, as in Neutron)."""


class Unconvertible(Invalid):
    """A value could not be converted (to a boolean, an integer): Neutron's InvalidInput."""


# --- kinds: how one value is checked, converted, filtered on and shown --------------------------


class Kind:
    """The type of an attribute. Subclasses convert a JSON value (``parse``) and a query-string value
    (``parse_filter``) into the domain value, show a domain value on the wire (``wire``) and describe
    the JSON value for OpenAPI (``schema``)."""

    nullable: bool = False

    def parse(self, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise Invalid("None is not a valid value")
        return self.check(value)

    def check(self, value: Any) -> Any:
        return value

    def parse_filter(self, text: str) -> Any:
        return self.parse(text)

    def wire(self, value: Any) -> Any:
        return value

    def wire_many(self, values: list[Any]) -> list[Any]:
        """The wire forms of a column of values: a list page converts one attribute of all its rows at
        a time, so a kind whose ``wire`` is one expression can spare a call per row by overriding this."""
        return list(map(self.wire, values))

    @property
    def shown_as_stored(self) -> bool:
        """``wire`` returns its value unchanged (rendering then reads it with the other such attributes)."""
        return type(self).wire is Kind.wire

    def json_schema(self) -> dict[str, Any]:
        return {}

    def schema(self) -> dict[str, Any]:
        base = self.json_schema()
        return {"anyOf": [base, {"type": "null"}]} if self.nullable else base


def _storable_text(text: str) -> str:
    """Text every database stores: no NUL, and no lone surrogate, which a JSON body can carry as an
    escape (``"\\ud800"``) but UTF-8 cannot encode (SQLite and PostgreSQL fail to store it, MariaDB's
    JSON check refuses it)."""
    if "\x00" in text:
        raise Invalid("NUL characters are not allowed")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise Invalid("a lone surrogate (an unpaired \\ud800-\\udfff escape) is not text") from None
    return text


@dataclass
class Str(Kind):
    max_len: int = 255
    nullable: bool = False

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"'{value}' is not a valid string")
        if len(value) > self.max_len:
            raise Invalid(f"'{value[:32]}...' exceeds maximum length of {self.max_len}")
        return _storable_text(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": self.max_len}


@dataclass
class Bool(Kind):
    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise Unconvertible(f"'{value}' cannot be converted to boolean")

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass
class Int(Kind):
    low: int | None = None
    high: int | None = None
    nullable: bool = False
    as_string: bool = False  # Neutron shows some integers as strings (subnet pools' prefix lengths)
    choices: tuple[int, ...] = ()

    def check(self, value: Any) -> int:
        if isinstance(value, bool):
            raise Unconvertible(f"'{value}' is not an integer")
        if isinstance(value, str):  # the openstack CLI sends numbers as strings
            try:
                value = int(value.strip())
            except ValueError:
                raise Unconvertible(f"'{value}' is not an integer") from None
        if not isinstance(value, int):
            raise Unconvertible(f"'{value}' is not an integer")
        if self.choices and value not in self.choices:
            raise Invalid(f"'{value}' is not in {list(self.choices)}")
        if self.low is not None and value < self.low:
            raise Invalid(f"'{value}' is too small - must be at least '{self.low}'")
        if self.high is not None and value > self.high:
            raise Invalid(f"'{value}' is too large - must be no larger than '{self.high}'")
        return value

    def wire(self, value: Any) -> Any:
        return str(value) if self.as_string and value is not None else value

    @property
    def shown_as_stored(self) -> bool:
        return not self.as_string

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer"}
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.low is not None:
            schema["minimum"] = self.low
        if self.high is not None:
            schema["maximum"] = self.high
        return {"anyOf": [schema, {"type": "string", "pattern": r"^\s*-?\d+\s*$"}]}


@dataclass
class Uuid(Kind):
    """A reference to another resource by id."""

    nullable: bool = False

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"'{value}' is not a valid UUID")
        try:
            uuid.UUID(value)
        except ValueError:
            raise Invalid(f"'{value[:64]}' is not a valid UUID") from None
        return value.lower()

    def parse_filter(self, text: str) -> str:
        return _storable_text(text)  # filtering by an id that cannot exist finds nothing, as in Neutron

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uuid"}


@dataclass
class OneOf(Kind):
    values: tuple[str, ...] = ()
    nullable: bool = False

    def check(self, value: Any) -> str:
        if value not in self.values:
            raise Invalid(f"'{value}' is not in {list(self.values)}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address exactly as written: no surrounding whitespace, as Neutron's validator requires."""
    if not isinstance(value, str) or value != value.strip():
        raise Invalid(f"'{value}' is not a valid IP address")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(f"'{value}' is not a valid IP address") from None


def parse_cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR; host bits are dropped (``10.0.0.5/24`` is ``10.0.0.0/24``), as Neutron does."""
    if not isinstance(value, str) or "/" not in value or value != value.strip():
        raise Invalid(f"'{value}' is not a valid IP subnet")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Invalid(f"'{value}' is not a valid IP subnet") from None


@dataclass
class Ip(Kind):
    nullable: bool = False

    def check(self, value: Any) -> Any:
        return parse_ip(value)

    def parse_filter(self, text: str) -> str:
        return _storable_text(text)

    def wire(self, value: Any) -> Any:
        return None if value is None else str(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "an IPv4 or IPv6 address"}


@dataclass
class Cidr(Kind):
    nullable: bool = False
    # A subnet's cidr is converted to its canonical form before it is validated (Neutron: a value
    # that cannot be is InvalidInput, "... is not in a CIDR format").
    canonical: bool = False

    def check(self, value: Any) -> Any:
        try:
            return parse_cidr(value)
        except Invalid:
            if self.canonical:
                raise Unconvertible(f"{value} is not in a CIDR format") from None
            raise

    def parse_filter(self, text: str) -> str:
        return _storable_text(text)

    def wire(self, value: Any) -> Any:
        return None if value is None else str(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "a CIDR, e.g. 10.0.0.0/24"}


@dataclass
class Mac(Kind):
    nullable: bool = False

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or value != value.strip():
            raise Invalid(f"'{value}' is not a valid MAC address")
        try:
            eui = netaddr.EUI(value, dialect=netaddr.mac_unix_expanded)
        except (netaddr.AddrFormatError, TypeError, ValueError):
            raise Invalid(f"'{value}' is not a valid MAC address") from None
        if eui.version != 48:  # netaddr also reads "1.0.0.0" as an EUI-64; neutron-lib takes 48 bits only
            raise Invalid(f"'{value}' is not a valid MAC address")
        if eui.words[0] & 1:
            raise Invalid(f"'{value}' is a multicast MAC address")
        return str(eui)

    def parse_filter(self, text: str) -> str:
        return _storable_text(text.lower())

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "a MAC address, e.g. fa:16:3e:00:00:01"}


@dataclass
class ListOf(Kind):
    item: Kind = field(default_factory=Kind)
    max_items: int = 1000
    unique: bool = False

    def check(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(f"'{value}' is not a list")
        if len(value) > self.max_items:
            raise Invalid(f"a list of at most {self.max_items} items is allowed, not {len(value)}")
        items = [self.item.parse(v) for v in value]
        if self.unique and len(set(map(str, items))) != len(items):
            raise Invalid(f"duplicate items in the list: '{value}'")
        return items

    def wire(self, value: Any) -> Any:
        if self.item.shown_as_stored:
            return list(value or [])
        return [self.item.wire(v) for v in value or []]

    def wire_many(self, values: list[Any]) -> list[Any]:
        if self.item.shown_as_stored:  # ``wire`` inline
            return [list(v) if v else [] for v in values]
        wire = self.item.wire
        return [[wire(item) for item in v] if v else [] for v in values]

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(), "maxItems": self.max_items}


@dataclass
class Record(Kind):
    """A JSON object of fixed keys, e.g. an allocation pool ``{start, end}``."""

    keys: dict[str, Kind] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    # The keys whose wire form is not the value itself: a port's fixed_ips are a record per address on
    # every row of a list page, and calling an identity ``wire`` for the others cost 0.2 ms a page.
    _converted: tuple[tuple[str, Kind], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._converted = tuple((k, kind) for k, kind in self.keys.items() if not kind.shown_as_stored)

    def check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"'{value}' is not a dictionary")
        unknown = sorted(set(value) - set(self.keys))
        if unknown:
            raise Invalid(f"unexpected keys supplied: {', '.join(unknown)}")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise Invalid(f"validation of dictionary's keys failed; expected keys: {sorted(self.keys)}")
        return {k: self.keys[k].parse(v) for k, v in value.items()}

    def wire(self, value: Any) -> Any:
        shown = dict(value)
        for key, kind in self._converted:
            if key in shown:
                shown[key] = kind.wire(shown[key])
        return shown

    @property
    def shown_as_stored(self) -> bool:
        return not self._converted

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {k: kind.schema() for k, kind in self.keys.items()},
            "required": list(self.required),
            "additionalProperties": False,
        }


# Neutron's limits as its current code has them (neutron/extensions/tagging.py: MAX_TAG_LEN = 255,
# MAX_TAGS_COUNT = 50). The API reference still says 60 characters, the limit of the retired "tag"
# extension; a tag current Neutron accepts must not be refused here.
TAG_MAX_LEN = 255
TAGS_PER_RESOURCE = 50


def check_tag(tag: Any) -> str:
    """One tag, as Neutron's string validator checks it."""
    if not isinstance(tag, str):
        raise Invalid(f"'{tag}' is not a valid string")
    if len(tag) > TAG_MAX_LEN:
        raise Invalid(f"'{tag[:64]}...' exceeds maximum length of {TAG_MAX_LEN}")
    return _storable_text(tag)


def check_tag_list(value: Any) -> list[str]:
    """A list of unique tags (Neutron's list_of_unique_strings)."""
    if not isinstance(value, list):
        raise Invalid(f"'{value}' is not a list")
    tags = [check_tag(t) for t in value]
    dups = sorted({t for t in tags if tags.count(t) > 1})
    if dups:
        raise Invalid(f"Duplicate items in the list: '{', '.join(dups)}'")
    return tags


def tag_limit_message() -> str:
    return f"The number of tags exceed the per-resource limit of {TAGS_PER_RESOURCE}"


@dataclass
class Tags(Kind):
    """Tags in a create body (ports only, as in Neutron); the tag operations check their own bodies."""

    def check(self, value: Any) -> list[str]:
        tags = check_tag_list(value)
        if len(tags) > TAGS_PER_RESOURCE:
            raise Invalid(tag_limit_message())
        return sorted(tags)

    def wire(self, value: Any) -> Any:
        if type(value) is str:  # a view's: the stored JSON text (``pipam.service.views``)
            return json_loads(value)
        return list(value or [])

    def wire_many(self, values: list[Any]) -> list[Any]:
        # ``wire`` inline; most resources have no tags, and their text is parsed by no call at all.
        return [([] if v == "[]" else json_loads(v)) if type(v) is str else list(v) if v else [] for v in values]

    def json_schema(self) -> dict[str, Any]:
        item = {"type": "string", "maxLength": TAG_MAX_LEN}
        return {"type": "array", "items": item, "maxItems": TAGS_PER_RESOURCE, "uniqueItems": True}


@dataclass
class Timestamp(Kind):
    """A datetime, or on SQLite as a view reads it the text SQLAlchemy stored (``2026-01-31 12:00:05.000007``,
    ``pipam.service.views``): both are shown as ``2026-01-31T12:00:05Z``."""

    def wire(self, value: Any) -> Any:
        # isoformat is a third of strftime's cost, and a third cheaper again without ``timespec``: the
        # slice drops microseconds (truncated, as ``timespec`` does) and the offset an aware value would
        # carry (strftime's format ignored it too). Stored text is sliced the same way.
        if type(value) is str:
            return value[:10] + "T" + value[11:19] + "Z"
        return None if value is None else value.isoformat()[:19] + "Z"

    def wire_many(self, values: list[Any]) -> list[Any]:
        # ``wire``'s expression inline: a call per value is what a column spares.
        return [
            v[:10] + "T" + v[11:19] + "Z" if type(v) is str else None if v is None else v.isoformat()[:19] + "Z"
            for v in values
        ]

    def parse_filter(self, text: str) -> datetime:
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise Invalid(f"'{text}' is not a timestamp of the form 2026-01-31T12:00:00Z") from None

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


# --- attributes and resources -----------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """One attribute of a resource, as Neutron's attribute maps describe them."""

    name: str  # on the wire (may contain ':', e.g. router:external)
    kind: Kind
    post: bool = False  # a client may set it on create
    put: bool = False  # a client may change it
    required: bool = False
    default: Any = MISSING  # filled in on create when absent (MISSING: the service decides)
    visible: bool = True
    filter: bool = False  # lists may filter by it (column: ``field``)
    sort: bool = False  # lists may sort by it
    # Neutron's policy on the attribute: only an admin may set it (a create that sends the default
    # value is no request to set it, as in Neutron), or only an admin may change it.
    admin_only: bool = False
    admin_only_on_update: bool = False
    alias_of: str | None = None  # another name for the same attribute (tenant_id for project_id)
    read: Callable[[Any], Any] | None = None  # how to read it from the domain object (default: getattr)
    # ``read`` already builds the wire form, in new objects: ``kind.wire`` is skipped when rendering
    shown_as_read: bool = False
    # how to read it for one caller, when a caller may not see all of it (a network's subnets)
    read_for: Callable[[Any, Any], Any] | None = None
    column: str | None = None  # the model's column for filters and sorts, when not ``field``
    # the relationship ``read`` reads (a port's addresses): shows and lists load it with the rows, a list
    # asked for other ``fields`` only does not
    related: str | None = None

    @cached_property
    def field(self) -> str:
        """The domain object's attribute (and, by default, the column of filters and sorts)."""
        return (self.alias_of or self.name).replace(":", "_")

    @property
    def column_name(self) -> str:
        return self.column or self.field

    def value_of(self, obj: Any, caller: Any = None) -> Any:
        if self.read_for is not None and caller is not None:
            return self.read_for(obj, caller)
        return self.read(obj) if self.read is not None else getattr(obj, self.field)


class Request(Mapping[str, Any]):
    """A validated create or update request: converted values of the attributes the client sent
    (and, on create, defaults of those it did not), keyed by domain field name."""

    def __init__(self, values: dict[str, Any], sent: Iterable[str]) -> None:
        self._values = values
        self.sent = frozenset(sent)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Request({self._values!r})"


@dataclass(frozen=True)
class MemberAction:
    """An operation on one resource beyond create/show/update/delete, as Neutron's member actions:
    ``<method> /v2.0/<collection>/<id>/<name>``. The resource's module holds a function of the same
    name, ``(uow, item_id, body, caller) -> the resource afterwards``, which checks its own body; the
    response shows ``response`` attributes of the resource, without an envelope."""

    name: str
    method: str = "PUT"
    status: int = 200
    response: tuple[str, ...] = ()
    body: dict[str, Any] = field(default_factory=dict)  # the request body's JSON schema, for OpenAPI
    summary: str = ""


def _tuple_getter(fields: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of ``fields`` of an object, as a tuple (``attrgetter`` gives a bare value for one
    field and refuses none)."""
    if len(fields) > 1:
        return operator.attrgetter(*fields)
    return lambda obj: tuple(getattr(obj, f) for f in fields)


def _same(value: Any) -> Any:
    return value


RowMaker = Callable[[tuple[Any, ...], tuple[Any, ...]], dict[str, Any]]


@cache
def _row_maker(plain: tuple[str, ...], computed: tuple[str, ...]) -> RowMaker:
    """``(plain values, computed values) -> {name: value}``, as one dict display compiled for these names
    (as ``namedtuple`` compiles its methods): building a list page's 1,000 rows took 0.96 ms with
    ``dict(zip(names, values))`` and takes 0.47 ms so. The names are attribute names from the resources'
    definitions, never from a request, and go in as string literals; a resource has a few such sets (its
    computed attributes, some of them left out by ``fields``), so the cache stays small."""
    items = [f"{name!r}: p[{i}]" for i, name in enumerate(plain)]
    items += [f"{name!r}: c[{i}]" for i, name in enumerate(computed)]
    maker: RowMaker = eval(f"lambda p, c: {{{', '.join(items)}}}")
    return maker


def _wire_reader(attr: Attr) -> Callable[[Any, Any], Any]:
    """``(obj, caller) -> attr's wire value``, as ``Attr.value_of`` then ``Kind.wire`` give it, with the
    choice of reader made once instead of per object."""
    wire = _same if attr.shown_as_read else attr.kind.wire
    read = attr.read or operator.attrgetter(attr.field)
    read_for = attr.read_for
    if read_for is None:
        return lambda obj, caller: wire(read(obj))
    return lambda obj, caller: wire(read(obj) if caller is None else read_for(obj, caller))


def _column_reader(attr: Attr) -> Callable[[Sequence[Any], Any], list[Any]]:
    """``(objs, caller) -> attr's wire values``, one per object: ``_wire_reader`` a column at a time."""
    wire_many = _same if attr.shown_as_read else attr.kind.wire_many
    read = attr.read or operator.attrgetter(attr.field)
    read_for = attr.read_for

    def column(objs: Sequence[Any], caller: Any) -> list[Any]:
        if read_for is None or caller is None:
            return wire_many(list(map(read, objs)))
        return wire_many([read_for(obj, caller) for obj in objs])

    return column


@dataclass
class Resource:
    singular: str
    plural: str
    model: type  # the core table's mapped class
    not_found: type[NotFound]
    attributes: tuple[Attr, ...]
    # lists: filters that are not plain columns (e.g. a port's fixed_ips=ip_address=...), name -> builder
    extra_filters: dict[str, Callable[[list[str]], Any]] = field(default_factory=dict)
    # visibility: a project sees its own rows and, where this names a column, rows where it is true
    shared_column: str | None = None
    label: str = ""  # as messages name it ("Subnet pool"); default: from the not-found error's name
    path: str = ""  # the collection in URLs when it differs from ``plural`` ("address-scopes")
    actions: tuple[MemberAction, ...] = ()
    by_name: dict[str, Attr] = field(init=False)
    # The relationships rendering reads (its attributes' ``related``), each with the attributes that read it.
    related: dict[str, tuple[str, ...]] = field(init=False)
    # How rendering reads: the names of the attributes shown as stored, one getter for all of them, and
    # the attributes with a reader or a wire form of their own, for one object and for a column of them
    # (``wire_values``, ``wire_page``).
    _plain: tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]] = field(init=False, repr=False)
    _computed: tuple[tuple[str, Callable[[Any, Any], Any]], ...] = field(init=False, repr=False)
    _columns: tuple[tuple[str, Callable[[Sequence[Any], Any], list[Any]]], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {a.name: a for a in self.attributes}
        related: dict[str, list[str]] = {}
        for a in self.attributes:
            if a.related is not None:
                related.setdefault(a.related, []).append(a.name)
        self.related = {name: tuple(names) for name, names in related.items()}
        shown = [a for a in self.attributes if a.visible]
        plain = [a for a in shown if a.read is None and a.read_for is None and a.kind.shown_as_stored]
        self._plain = (tuple(a.name for a in plain), _tuple_getter([a.field for a in plain]))
        self._computed = tuple((a.name, _wire_reader(a)) for a in shown if a not in plain)
        self._columns = tuple((a.name, _column_reader(a)) for a in shown if a not in plain)

    def wire_values(self, obj: Any, caller: Any = None, fields: Collection[str] = ()) -> dict[str, Any]:
        """The visible attributes of ``obj`` (only ``fields`` when given) in their wire form, as ``caller``
        may see them: the attributes shown as stored by one C-level getter, the rest one by one, and only
        when asked for (a relationship not asked for is not loaded). A page renders with ``wire_page``."""
        names, getter = self._plain
        shown = dict(zip(names, getter(obj), strict=True))
        for name, read in self._computed:
            if not fields or name in fields:
                shown[name] = read(obj, caller)
        return {name: value for name, value in shown.items() if name in fields} if fields else shown

    def wire_page(self, objs: Sequence[Any], caller: Any = None, fields: Collection[str] = ()) -> list[dict[str, Any]]:
        """``wire_values`` of many objects, the same values: a list page renders a thousand rows, so the
        attributes not shown as stored are read a column at a time (a call per attribute, not per row
        and attribute)."""
        names, getter = self._plain
        computed = [(name, read) for name, read in self._columns if not fields or name in fields]
        make = _row_maker(names, tuple(name for name, _ in computed))
        # Each column holds a value per object; with none, each row's computed part is empty.
        columns = zip(*(read(objs, caller) for _, read in computed), strict=True) if computed else repeat(())
        rows = list(map(make, map(getter, objs), columns))
        if fields:
            return [{name: value for name, value in row.items() if name in fields} for row in rows]
        return rows

    @property
    def kind(self) -> str:
        return self.label or self.not_found.__name__.removesuffix("NotFound")

    @property
    def collection_path(self) -> str:
        return self.path or self.plural

    @property
    def taggable(self) -> bool:
        """Neutron's standard-attribute resources carry tags (and the tag operations)."""
        return "tags" in self.by_name

    @property
    def revisioned(self) -> bool:
        """It has a revision number, so ``If-Match: revision_number=N`` can constrain changes."""
        return "revision_number" in self.by_name

    def missing(self, item_id: str) -> NotFound:
        return self.not_found(f"{self.kind} {item_id} could not be found.")

    def visible(self) -> list[Attr]:
        return [a for a in self.attributes if a.visible]

    def filters(self) -> dict[str, Attr]:
        return {a.name: a for a in self.attributes if a.filter}

    def sort_keys(self) -> dict[str, Attr]:
        return {a.name: a for a in self.attributes if a.sort}

    # --- requests ------------------------------------------------------------------------------

    def create_request(self, body: Mapping[str, Any]) -> Request:
        self._unknown(body)
        for name in body:
            if not self.by_name[name].post:
                raise HTTPBadRequest(f"Attribute '{name}' not allowed in POST")
        values = self._convert(body)
        for attr in self.attributes:
            if attr.alias_of is not None or not attr.post or attr.field in values:
                continue
            if attr.required:
                raise HTTPBadRequest(f"Failed to parse request. Required attribute '{attr.name}' not specified")
            if attr.default is not MISSING:
                values[attr.field] = attr.default
        return Request(values, (self.by_name[n].field for n in body))

    def update_request(self, body: Mapping[str, Any]) -> Request:
        self._unknown(body)
        for name in body:
            if not self.by_name[name].put:
                raise HTTPBadRequest(f"Cannot update read-only attribute {name}")
        values = self._convert(body)
        return Request(values, values)

    def _unknown(self, body: Mapping[str, Any]) -> None:
        unknown = sorted(k for k in body if k not in self.by_name)
        if unknown:
            raise HTTPBadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")

    def _convert(self, body: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, raw in body.items():
            attr = self.by_name[name]
            try:
                value = attr.kind.parse(raw)
            except Unconvertible as exc:
                raise InvalidInput(f"Invalid input for operation: {exc}.") from None
            except Invalid as exc:
                raise HTTPBadRequest(f"Invalid input for {name}. Reason: {exc}.") from None
            if attr.field in values and values[attr.field] != value:
                raise InvalidInput(f"Invalid input for {name}. Reason: it differs from {attr.alias_of or name}.")
            values[attr.field] = value
        return values

    # --- documentation -------------------------------------------------------------------------

    def body_schema(self, create: bool) -> dict[str, Any]:
        allowed = [a for a in self.attributes if (a.post if create else a.put)]
        return {
            "type": "object",
            "properties": {a.name: a.kind.schema() for a in allowed},
            "required": [a.name for a in allowed if create and a.required],
            "additionalProperties": False,
        }


# --- the standard attributes every resource has ---------------------------------------------


def standard_attributes(name_filter: bool = True, tags_on_create: bool = False) -> tuple[Attr, ...]:
    """``tags_on_create``: the create body may hold tags (Neutron: ports only); tags are never
    changed through an update body, only through the tag operations."""
    return (
        Attr("id", Uuid(), filter=True, sort=True),
        Attr("name", Str(255), post=True, put=True, default="", filter=name_filter, sort=True),
        Attr("description", Str(255), post=True, put=True, default="", filter=True, sort=True),
        Attr("project_id", Str(255), post=True, filter=True, sort=True),
        Attr("tenant_id", Str(255), post=True, filter=True, sort=True, alias_of="project_id"),
        Attr("tags", Tags(), post=tags_on_create, default=[]),
        Attr("revision_number", Int(), filter=True, sort=True),
        Attr("created_at", Timestamp(), filter=True, sort=True),
        Attr("updated_at", Timestamp(), filter=True, sort=True),
    )
