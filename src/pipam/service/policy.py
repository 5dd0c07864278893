"""Who may do what: Neutron's default policies in one table, and how resources hide from callers.

Two roles: an **admin** (the ``api_token``, or anyone when no tokens are configured) and a **project**
(a token of ``project_tokens``, limited to its project). A rule decides one action on one *target*:
the resource's project, whether it is shared (its own ``shared`` flag, or its network's for subnets
and ports) and the project owning its network. ``RULES`` holds Neutron's defaults by Neutron's names
(``create_subnet``, ``update_port:fixed_ips:ip_address``, ...); a resource without a row of its own
gets Neutron's ``default`` (admin or owner; readable when shared if it has a ``shared`` flag), and an
attribute its definition marks ``admin_only`` is admin only to set, as Neutron's attribute rules are.

Hiding follows Neutron's 404-versus-403, made stricter: a resource the caller may not read answers
exactly as an unknown id does (same status, type and message; Neutron's generic "HTTPNotFound" would
tell the two apart), in shows, lists, markers, references and refused changes; a change refused on a
resource the caller *can* read answers 403 ``PolicyNotAuthorized``; so does a refused create.

Resource modules call ``get_visible``, ``fetch`` + ``authorize`` and ``authorize_create``, listing
calls ``visible_clause`` and ``can_read``: nothing else decides ownership.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, false, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql import ColumnElement

from pipam.db.models import Network
from pipam.db.transactions import Transaction
from pipam.errors import HTTPBadRequest, PolicyNotAuthorized
from pipam.service.attributes import MISSING, Request, Resource
from pipam.service.views import views_of


@dataclass(frozen=True)
class Caller:
    """The caller's project, and whether it is limited to that project (a project token) or an admin."""

    project_id: str = ""
    restricted: bool = False

    @property
    def admin(self) -> bool:
        return not self.restricted

    def owner_for(self, request: Request) -> str:
        """The project a new resource belongs to."""
        project = request.get("project_id") or self.project_id or ""
        if self.restricted and project != self.project_id:
            raise HTTPBadRequest(
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request "
                "requires admin privileges"
            )
        return project


ADMIN = Caller()


# --- targets: what a rule looks at ---------------------------------------------------------------

# Resources whose "shared" and "network owner" are their network's (Neutron's rule:shared is
# field:networks:shared=True, which it resolves through a subnet's or port's network_id).
NETWORK_CHILDREN = frozenset({"subnet", "port"})


@dataclass(frozen=True)
class Target:
    project_id: str
    shared: bool = False
    network_owner: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)  # values the request sets (device_owner, ...)


def target_of(session: Session, resource: Resource, obj: Any, fields: Mapping[str, Any] | None = None) -> Target:
    """The target of an existing row."""
    if resource.singular in NETWORK_CHILDREN:
        net = session.get(Network, obj.network_id)
        return Target(obj.project_id, bool(net and net.shared), net.project_id if net else None, fields or {})
    shared = bool(resource.shared_column and getattr(obj, resource.shared_column))
    return Target(obj.project_id, shared, None, fields or {})


def new_target(project_id: str, network: Network | None = None, fields: Mapping[str, Any] | None = None) -> Target:
    """The target of a resource about to be created (on ``network`` for subnets and ports)."""
    if network is None:
        return Target(project_id, fields=fields or {})
    return Target(project_id, bool(network.shared), network.project_id, fields or {})


# --- rules -------------------------------------------------------------------------------------


class Rule:
    """A check on (caller, target); rules that decide reads also give the same answer as SQL."""

    def allows(self, caller: Caller, target: Target) -> bool:
        raise NotImplementedError

    def where(self, caller: Caller, resource: Resource) -> ColumnElement[bool]:
        raise TypeError(f"{type(self).__name__} cannot filter a list")

    def __or__(self, other: Rule) -> Rule:
        return AnyOf((*_parts(self), *_parts(other)))


def _parts(rule: Rule) -> tuple[Rule, ...]:
    return rule.rules if isinstance(rule, AnyOf) else (rule,)


@dataclass(frozen=True)
class AnyOf(Rule):
    rules: tuple[Rule, ...]

    def allows(self, caller: Caller, target: Target) -> bool:
        return any(r.allows(caller, target) for r in self.rules)

    def where(self, caller: Caller, resource: Resource) -> ColumnElement[bool]:
        return or_(*(r.where(caller, resource) for r in self.rules))


class _Admin(Rule):
    def allows(self, caller: Caller, target: Target) -> bool:
        return caller.admin

    def where(self, caller: Caller, resource: Resource) -> ColumnElement[bool]:
        return true() if caller.admin else false()


class _Owner(Rule):
    def allows(self, caller: Caller, target: Target) -> bool:
        return bool(caller.project_id) and target.project_id == caller.project_id

    def where(self, caller: Caller, resource: Resource) -> ColumnElement[bool]:
        if not caller.project_id:
            return false()
        return resource.model.project_id == caller.project_id  # type: ignore[attr-defined,no-any-return]


class _NetworkOwner(Rule):
    def allows(self, caller: Caller, target: Target) -> bool:
        return bool(caller.project_id) and target.network_owner == caller.project_id

    def where(self, caller: Caller, resource: Resource) -> ColumnElement[bool]:
        if not caller.project_id or resource.singular not in NETWORK_CHILDREN:
            return false()
        owned = select(Network.id).where(Network.project_id == caller.project_id)
        return resource.model.network_id.in_(owned)  # type: ignore[attr-defined,no-any-return]


class _Shared(Rule):
    def allows(self, caller: Caller, target: Target) -> bool:
        return target.shared

    def where(self, caller: Caller, resource: Resource) -> ColumnElement[bool]:
        if resource.singular in NETWORK_CHILDREN:
            shared = select(Network.id).where(Network.shared.is_(True))
            return resource.model.network_id.in_(shared)  # type: ignore[attr-defined,no-any-return]
        if resource.shared_column:
            return getattr(resource.model, resource.shared_column).is_(True)  # type: ignore[no-any-return]
        return false()


class _NotNetworkDevice(Rule):
    """Neutron's ``not rule:network_device``: the port's device_owner does not start with ``network:``."""

    def allows(self, caller: Caller, target: Target) -> bool:
        return not str(target.fields.get("device_owner") or "").startswith("network:")


ADMIN_ONLY: Rule = _Admin()
OWNER: Rule = _Owner()
NET_OWNER: Rule = _NetworkOwner()
SHARED: Rule = _Shared()
NOT_NETWORK_DEVICE: Rule = _NotNetworkDevice()


# --- the table: Neutron's defaults (neutron/conf/policies/*.py), by Neutron's names ---------------
# Attribute rules (``<action>:<attribute>``) are checked only for attributes the request sets.

RULES: dict[str, Rule] = {
    # networks
    "create_network": ADMIN_ONLY | OWNER,
    "create_network:shared": ADMIN_ONLY,
    "get_network": ADMIN_ONLY | OWNER | SHARED,
    "update_network": ADMIN_ONLY | OWNER,
    "update_network:shared": ADMIN_ONLY,
    "create_network:router:external": ADMIN_ONLY,
    "update_network:router:external": ADMIN_ONLY,
    "delete_network": ADMIN_ONLY | OWNER,
    # subnets: created on a network by its owner only (Neutron's admin_or_network_owner)
    "create_subnet": ADMIN_ONLY | NET_OWNER,
    "get_subnet": ADMIN_ONLY | OWNER | SHARED,
    "update_subnet": ADMIN_ONLY | OWNER | NET_OWNER,
    "delete_subnet": ADMIN_ONLY | OWNER | NET_OWNER,
    # ports
    "create_port": ADMIN_ONLY | OWNER,
    "create_port:device_owner": NOT_NETWORK_DEVICE | ADMIN_ONLY | NET_OWNER,
    "create_port:mac_address": ADMIN_ONLY | NET_OWNER,
    "create_port:fixed_ips": ADMIN_ONLY | NET_OWNER | SHARED,
    "create_port:fixed_ips:subnet_id": ADMIN_ONLY | NET_OWNER | SHARED,
    "create_port:fixed_ips:ip_address": ADMIN_ONLY | NET_OWNER,
    "get_port": ADMIN_ONLY | OWNER,
    "update_port": ADMIN_ONLY | OWNER,
    "update_port:device_owner": NOT_NETWORK_DEVICE | ADMIN_ONLY | NET_OWNER,
    "update_port:mac_address": ADMIN_ONLY,
    "update_port:fixed_ips": ADMIN_ONLY | NET_OWNER,
    "update_port:fixed_ips:subnet_id": ADMIN_ONLY | NET_OWNER | SHARED,
    "update_port:fixed_ips:ip_address": ADMIN_ONLY | NET_OWNER,
    "delete_port": ADMIN_ONLY | OWNER | NET_OWNER,
    # subnet pools
    "create_subnetpool": ADMIN_ONLY | OWNER,
    "create_subnetpool:shared": ADMIN_ONLY,
    "create_subnetpool:is_default": ADMIN_ONLY,
    "get_subnetpool": ADMIN_ONLY | OWNER | SHARED,
    "update_subnetpool": ADMIN_ONLY | OWNER,
    "update_subnetpool:is_default": ADMIN_ONLY,
    "delete_subnetpool": ADMIN_ONLY | OWNER,
    # address scopes
    "create_address_scope": ADMIN_ONLY | OWNER,
    "create_address_scope:shared": ADMIN_ONLY,
    "get_address_scope": ADMIN_ONLY | OWNER | SHARED,
    "update_address_scope": ADMIN_ONLY | OWNER,
    "update_address_scope:shared": ADMIN_ONLY,
    "delete_address_scope": ADMIN_ONLY | OWNER,
    # network IP availability: admin only (a project's list is empty, its show 404)
    "get_network_ip_availability": ADMIN_ONLY,
}


def rule(name: str, resource: Resource | None = None) -> Rule | None:
    """The rule called ``name`` (``update_port``, ``create_network:shared``): the table's; else, for a
    resource without a row, Neutron's ``default`` for a whole action (readable when shared, if it has
    a ``shared`` flag) and admin only for an attribute its definition marks ``admin_only``; None when
    nothing restricts the attribute."""
    if name in RULES:
        return RULES[name]
    if resource is None:
        raise KeyError(f"no policy rule {name}")
    action, _, attribute = name.partition(":")
    if not attribute:
        if action == f"get_{resource.singular}" and resource.shared_column:
            return ADMIN_ONLY | OWNER | SHARED
        return ADMIN_ONLY | OWNER
    # the attribute itself (names may hold ':', router:external), else the one a sub-rule refines
    attr = resource.by_name.get(attribute) or resource.by_name.get(attribute.split(":")[0])
    return ADMIN_ONLY if attr is not None and attr.admin_only else None


def allowed(caller: Caller, name: str, target: Target, resource: Resource | None = None) -> bool:
    found = rule(name, resource)
    return found is None or found.allows(caller, target)


OK, FORBIDDEN, HIDDEN = 200, 403, 404


def decide(
    caller: Caller,
    action: str,
    singular: str,
    target: Target,
    attrs: Iterable[str] = (),
    resource: Resource | None = None,
) -> tuple[int, list[str]]:
    """The answer to ``action`` on ``target`` setting ``attrs``, and the rules that refused it.

    A create is refused with 403. A read the caller may not make is hidden (404, as an unknown id).
    An update or delete is refused with 403 when the caller may read the row, else hidden; an update
    also needs the right to read (its answer shows the row), a delete does not (Neutron lets a
    network's owner delete any port on it).
    """
    if caller.admin:
        return OK, []
    base = f"{action}_{singular}"
    failed = [n for n in [base, *(f"{base}:{a}" for a in attrs)] if not allowed(caller, n, target, resource)]
    if action == "create":
        return (FORBIDDEN if failed else OK), failed
    readable = allowed(caller, f"get_{singular}", target, resource)
    if action == "get":
        return (OK if readable else HIDDEN), failed
    if not failed and (readable or action != "update"):
        return OK, []
    return (FORBIDDEN if readable else HIDDEN), failed


def _refused(action: str, singular: str, failed: list[str]) -> PolicyNotAuthorized:
    names = [f"{action}_{singular}", *(n for n in failed if ":" in n)]
    return PolicyNotAuthorized(f"({' and '.join(f'rule:{n}' for n in names)}) is disallowed by policy")


def sent_attributes(resource: Resource, request: Request, create: bool = False) -> list[str]:
    """The wire names of the attributes a request sets (what attribute rules are named after). On a
    create, an attribute sent with its default value is not "set" (Neutron's explicitly-set rule:
    ``shared: false`` from a project is fine)."""
    return [
        a.name
        for a in resource.attributes
        if a.alias_of is None
        and a.field in request.sent
        and not (create and a.default is not MISSING and request[a.field] == a.default)
    ]


# --- enforcement: what resource modules call -------------------------------------------------------


def check(caller: Caller, name: str, target: Target) -> bool:
    """One rule of the table by name, for a module that cannot import the resource it is about."""
    return allowed(caller, name, target)


def can_read(session: Session, caller: Caller, resource: Resource, obj: Any) -> bool:
    if caller.admin:
        return True
    return allowed(caller, f"get_{resource.singular}", target_of(session, resource, obj), resource)


def visible_clause(caller: Caller, resource: Resource) -> ColumnElement[bool] | None:
    """A WHERE clause limiting a list to what the caller may read; None for an admin."""
    if caller.admin:
        return None
    found = rule(f"get_{resource.singular}", resource)
    return None if found is None else found.where(caller, resource)


def _valid_id(resource: Resource, item_id: object) -> str:
    """An id that could exist; anything else (too long, NUL, not a string) is the resource's 404."""
    if not isinstance(item_id, str) or len(item_id) > 36 or "\x00" in item_id:
        raise resource.missing(str(item_id)[:64])
    return item_id


@functools.cache
def _locked_by_id(model: Any, options: tuple[ORMOption, ...]) -> Select[Any]:
    """The locking read of one row by id, built once: ``Session.get`` sends a locking read every time too
    (the identity map cannot say whether the row is locked), and builds its statement anew for it, which
    cost an update or a delete of a port about 80 us."""
    return select(model).where(model.id == bindparam("item_id")).options(*options).with_for_update(of=model)


def fetch(
    session: Session,
    resource: Resource,
    item_id: object,
    *,
    for_update: bool = False,
    options: Sequence[ORMOption] = (),
) -> Any:
    """The row by id whoever asks, or the resource's 404; ``authorize`` decides what the caller may do.
    ``for_update`` locks the row alone, also where ``options`` join others to the read (PostgreSQL
    refuses to lock the nullable side of an outer join). A read that does not lock answers a row this
    transaction already holds without a statement."""
    key = _valid_id(resource, item_id)
    if for_update:
        stmt = _locked_by_id(resource.model, tuple(options))
        obj = session.execute(stmt, {"item_id": key}).unique().scalar_one_or_none()
    else:
        obj = session.get(resource.model, key, options=options)
    if obj is None:
        raise resource.missing(item_id)
    return obj


def get_visible(
    session: Session,
    resource: Resource,
    item_id: object,
    caller: Caller = ADMIN,
    *,
    for_update: bool = False,
    options: Sequence[ORMOption] = (),
) -> Any:
    """The resource by id, as the caller may read it; anything else is the resource's 404."""
    obj = fetch(session, resource, item_id, for_update=for_update, options=options)
    if not can_read(session, caller, resource, obj):
        raise resource.missing(obj.id)
    return obj


def show_visible(tx: Transaction, resource: Resource, item_id: object, caller: Caller = ADMIN) -> Any:
    """What a show renders: the row's read-only view (``pipam.service.views``) with what rendering reads,
    in one statement, if the caller may read it; anything else is the resource's 404. The policy's
    lookups (a port's network) open the transaction's session; an admin's show never does."""
    obj = views_of(resource).show(tx.connection, _valid_id(resource, item_id))
    if obj is None:
        raise resource.missing(item_id)
    if not caller.admin and not can_read(tx.session, caller, resource, obj):
        raise resource.missing(obj.id)
    return obj


def authorize(
    session: Session,
    caller: Caller,
    resource: Resource,
    action: str,
    obj: Any,
    attrs: Iterable[str] = (),
    fields: Mapping[str, Any] | None = None,
) -> None:
    """May the caller ``update`` or ``delete`` this row, setting ``attrs`` (``fields``: their values)?"""
    if caller.admin:  # allowed everything (``decide``): the target, a read of the row's network, is not needed
        return
    target = target_of(session, resource, obj, fields)
    status, failed = decide(caller, action, resource.singular, target, attrs, resource)
    if status == HIDDEN:
        raise resource.missing(obj.id)
    if status == FORBIDDEN:
        raise _refused(action, resource.singular, failed)


def authorize_create(caller: Caller, resource: Resource, target: Target, attrs: Iterable[str] = ()) -> None:
    """May the caller create this resource, setting ``attrs``? Refused: 403."""
    status, failed = decide(caller, "create", resource.singular, target, attrs, resource)
    if status != OK:
        raise _refused("create", resource.singular, failed)


# --- the table as a reader sees it (docs/security.md shows it; a test keeps the two equal) -----------

PERSPECTIVES = (
    "admin",
    "owner",
    "owner, on a shared network",
    "network owner",
    "other project",
    "other project, shared",
)


# Attribute names with a colon in them (Neutron's extension prefixes), told apart from nested rules
# such as create_port:fixed_ips:ip_address when the table is drawn.
COLON_ATTRIBUTES = {"router:external"}


def outcome(name: str, perspective: str) -> str:
    """What ``decide`` answers for the rule called ``name`` (with the rules it refines: ``update_port``
    and ``update_port:fixed_ips`` for ``update_port:fixed_ips:ip_address``): ✓, 403, 404 (hidden:
    exactly as an unknown id), 400, or — (the case does not arise).

    Perspectives, for the row a rule is about: the project owning it (creating: on its own network);
    owning it on another project's shared network (subnets and ports); owning its network but not the
    row; another project, the row (subnets, ports: its network) private; the same, shared.
    """
    verb, _, rest = name.partition("_")
    singular, *path = rest.split(":")
    if ":".join(path) in COLON_ATTRIBUTES:  # one attribute whose name has a colon, not a nested rule
        path = [":".join(path)]
    attrs = [":".join(path[: i + 1]) for i in range(len(path))]
    child = singular in NETWORK_CHILDREN
    caller = ADMIN if perspective == "admin" else Caller("p", restricted=True)
    me, other = "p", "q"
    fields = {"device_owner": "network:router_interface"} if path and path[-1] == "device_owner" else {}
    if not child and perspective in ("owner, on a shared network", "network owner"):
        return "—"
    if verb == "create":
        # The creator owns what it creates; the perspectives say whose network it goes on.
        if perspective in ("network owner", "other project, shared"):
            return "—"
        if perspective == "other project":
            return "404" if child else "400"  # another's private network is unknown; naming another project
        on_shared = perspective == "owner, on a shared network"
        target = Target(me, on_shared, (other if on_shared else me) if child else None, fields)
    else:
        owner = me if perspective in ("admin", "owner", "owner, on a shared network") else other
        network_owner = me if perspective in ("admin", "owner", "network owner") else other
        shared = perspective in ("owner, on a shared network", "other project, shared")
        target = Target(owner, shared, network_owner if child else None, fields)
    status, _ = decide(caller, verb, singular, target, attrs)
    return "✓" if status == OK else str(status)


def table() -> str:
    """The policy table in Markdown: one row per rule of ``RULES``, one column per perspective."""
    lines = ["| rule | " + " | ".join(PERSPECTIVES) + " |", "|---" * (len(PERSPECTIVES) + 1) + "|"]
    for name in RULES:
        lines.append(f"| `{name}` | " + " | ".join(outcome(name, p) for p in PERSPECTIVES) + " |")
    return "\n".join(lines)
