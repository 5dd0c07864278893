"""Subnet pools: prefixes from which subnets get their CIDR, optionally in an address scope."""

from __future__ import annotations

import ipaddress
from typing import Any

import netaddr
from sqlalchemy import delete as sql_delete
from sqlalchemy import exists, select

from pipam.db.base import new_id
from pipam.db.models import Subnet, SubnetPool, SubnetPoolFreeBlock, SubnetPoolPrefix
from pipam.errors import (
    AddressScopePrefixConflict,
    EmptySubnetPoolPrefixList,
    HTTPBadRequest,
    IllegalSubnetPoolIpVersionAssociationToAddressScope,
    IllegalSubnetPoolPrefixBounds,
    IllegalSubnetPoolPrefixUpdate,
    IllegalSubnetPoolUpdate,
    InvalidInput,
    MaxPrefixSubnetAllocationError,
    MinPrefixSubnetAllocationError,
    NetworkAddressScopeAffinityError,
    PrefixVersionMismatch,
    SubnetAllocationError,
    SubnetPoolInUse,
    SubnetPoolNotFound,
)
from pipam.ipam.addr import IPNetwork, int_to_ip
from pipam.service import prefix_blocks
from pipam.service.attributes import (
    Attr,
    Bool,
    Cidr,
    Int,
    Invalid,
    ListOf,
    MemberAction,
    Request,
    Resource,
    Uuid,
    parse_cidr,
    standard_attributes,
)
from pipam.service.common import new_standard, touch, update_standard
from pipam.service.database import UnitOfWork
from pipam.service.policy import (
    ADMIN,
    Caller,
    authorize,
    authorize_create,
    fetch,
    get_visible,
    new_target,
    sent_attributes,
)
from pipam.service.resources import address_scopes

MAX_PREFIXES = 1000
PREFIXES_BODY = {
    "type": "object",
    "properties": {"prefixes": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["prefixes"],
}

DEFINITION = Resource(
    singular="subnetpool",
    plural="subnetpools",
    label="Subnet pool",
    model=SubnetPool,
    not_found=SubnetPoolNotFound,
    shared_column="shared",
    # Extension subnetpool-prefix-ops: the response is {"prefixes": [...]}, the pool's whole list.
    actions=(
        MemberAction("add_prefixes", response=("prefixes",), body=PREFIXES_BODY, summary="Add prefixes to a pool"),
        MemberAction(
            "remove_prefixes", response=("prefixes",), body=PREFIXES_BODY, summary="Remove prefixes from a pool"
        ),
    ),
    attributes=(
        *standard_attributes(),
        Attr(
            "prefixes",
            ListOf(Cidr(), max_items=MAX_PREFIXES),
            post=True,
            put=True,
            required=True,
            read=lambda pool: [p.cidr for p in pool.prefixes],
            related="prefixes",
        ),
        Attr("ip_version", Int(), filter=True, sort=True),
        # Neutron shows the prefix lengths as strings on create, show and list; its update response
        # shows integers (a bug in neutron's update_subnetpool). Pipam shows strings everywhere, so
        # that an update response equals the next show.
        Attr("default_prefixlen", Int(0, 128, as_string=True), post=True, put=True, filter=True, sort=True),
        Attr("min_prefixlen", Int(0, 128, as_string=True), post=True, put=True, filter=True, sort=True),
        Attr("max_prefixlen", Int(0, 128, as_string=True), post=True, put=True, filter=True, sort=True),
        Attr("shared", Bool(), post=True, default=False, filter=True, sort=True, admin_only=True),
        # Extension default-subnetpools: one default pool per IP version, chosen by an admin.
        Attr("is_default", Bool(), post=True, put=True, default=False, filter=True, sort=True, admin_only=True),
        Attr("default_quota", Int(0, nullable=True), post=True, put=True, default=None, filter=True, sort=True),
        Attr("address_scope_id", Uuid(nullable=True), post=True, put=True, default=None, filter=True, sort=True),
    ),
)


def get(uow: UnitOfWork, pool_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> SubnetPool:
    return get_visible(uow.session, DEFINITION, pool_id, caller, for_update=for_update)


def _compact(nets: list[IPNetwork]) -> list[IPNetwork]:
    """Overlapping and adjacent prefixes merged, as Neutron keeps them."""
    if not nets:
        raise EmptySubnetPoolPrefixList()
    if len({n.version for n in nets}) != 1:
        raise PrefixVersionMismatch()
    return [ipaddress.ip_network(str(c)) for c in netaddr.cidr_merge([str(n) for n in nets])]


def _space(nets: list[IPNetwork]) -> netaddr.IPSet:
    return netaddr.IPSet(map(str, nets))


def _prefixes(pool: SubnetPool) -> list[IPNetwork]:
    return [ipaddress.ip_network(p.cidr) for p in pool.prefixes]


def _bounds(pool: SubnetPool, req: Request, nets: list[IPNetwork]) -> None:
    """The prefix lengths, checked in Neutron's order."""
    width = 32 if pool.ip_version == 4 else 128
    shortest = min((n.prefixlen for n in nets), default=width)
    min_len = req.get("min_prefixlen", pool.min_prefixlen if pool.min_prefixlen is not None else shortest)
    max_len = req.get("max_prefixlen", pool.max_prefixlen if pool.max_prefixlen is not None else width)
    default = req.get("default_prefixlen", pool.default_prefixlen if pool.default_prefixlen is not None else min_len)
    for bad, kind, length, base_kind, base in (
        (min_len > max_len, "min_prefixlen", min_len, "max_prefixlen", max_len),
        (max_len > width, "max_prefixlen", max_len, "ip_version_max", width),
        (default < min_len, "default_prefixlen", default, "min_prefixlen", min_len),
        (default > max_len, "default_prefixlen", default, "max_prefixlen", max_len),
    ):
        if bad:
            raise IllegalSubnetPoolPrefixBounds(f"Illegal prefix bounds: {kind}={length}, {base_kind}={base}.")
    pool.min_prefixlen, pool.max_prefixlen, pool.default_prefixlen = min_len, max_len, default


def _ranges(space: netaddr.IPSet) -> list[tuple[int, int]]:
    return [(r.first, r.last) for r in space.iter_ipranges()]


def _make_default(uow: UnitOfWork, pool: SubnetPool, is_default: bool) -> None:
    """Extension default-subnetpools; the unique default_ip_version keeps concurrent requests honest."""
    if is_default and not pool.is_default:
        taken = select(exists().where(SubnetPool.default_ip_version == pool.ip_version, SubnetPool.id != pool.id))
        if uow.session.scalar(taken):
            raise InvalidInput(
                "Invalid input for operation: A default subnetpool for this IP family has already been set. "
                "Only one default may exist per IP family."
            )
    pool.is_default = is_default
    pool.default_ip_version = pool.ip_version if is_default else None


def _join_scope(uow: UnitOfWork, pool: SubnetPool, scope_id: str | None, nets: list[IPNetwork], caller: Caller) -> None:
    """Neutron's rules for a pool in an address scope: the scope visible to the caller, of the pool's
    IP version, no network left with subnets in two scopes, no prefix shared with another pool of
    the scope. The scope row is locked, so two pools cannot join with overlapping prefixes at once."""
    pool.address_scope_id = scope_id
    if scope_id is None:
        return
    scope = address_scopes.get(uow, scope_id, caller, for_update=True)
    if scope.ip_version != pool.ip_version:
        raise IllegalSubnetPoolIpVersionAssociationToAddressScope(
            f"Illegal subnetpool association: subnetpool {pool.id} cannot associate with address scope "
            f"{scope_id} because subnetpool ip_version is not {scope.ip_version}."
        )
    _check_rescoping(uow, pool)
    others = uow.session.scalars(
        select(SubnetPool).where(SubnetPool.address_scope_id == scope_id, SubnetPool.id != pool.id)
    )
    mine = _space(nets)
    for other in others:
        if mine & _space(_prefixes(other)):
            raise AddressScopePrefixConflict()


def _check_rescoping(uow: UnitOfWork, pool: SubnetPool) -> None:
    """A network whose subnets of this IP version do not all come from this pool would be split
    across address scopes."""
    networks = select(Subnet.network_id).where(Subnet.subnetpool_id == pool.id)
    strangers = select(Subnet.id).where(
        Subnet.network_id.in_(networks),
        Subnet.ip_version == pool.ip_version,
        (Subnet.subnetpool_id != pool.id) | Subnet.subnetpool_id.is_(None),
    )
    if uow.session.scalar(select(exists(strangers))):
        raise NetworkAddressScopeAffinityError()


def _may_change_scoped(uow: UnitOfWork, pool: SubnetPool, caller: Caller) -> None:
    """A pool in an address scope of another project is changed by that project or an admin only."""
    if pool.address_scope_id is None or caller.admin:
        return
    scope = address_scopes.get(uow, pool.address_scope_id, caller)
    if scope.project_id != caller.project_id:
        raise IllegalSubnetPoolUpdate(
            f"Illegal subnetpool update : subnetpool {pool.id} cannot be updated when associated with shared "
            f"address scope {scope.id}."
        )


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN) -> SubnetPool:
    nets = _compact(req["prefixes"])
    pool = SubnetPool(id=new_id())
    new_standard(pool, req, caller)
    authorize_create(caller, DEFINITION, new_target(pool.project_id), sent_attributes(DEFINITION, req, create=True))
    pool.ip_version = nets[0].version
    pool.min_prefixlen = pool.max_prefixlen = pool.default_prefixlen = None  # type: ignore[assignment]
    pool.is_default = False
    _bounds(pool, req, nets)
    pool.shared = req["shared"]
    pool.default_quota = req["default_quota"]
    _make_default(uow, pool, req["is_default"])
    _join_scope(uow, pool, req["address_scope_id"], nets, caller)
    pool.prefixes = [SubnetPoolPrefix(cidr=str(n)) for n in nets]
    uow.session.add(pool)
    uow.session.flush()
    prefix_blocks.add_ranges(uow.session, pool.id, _ranges(_space(nets)))
    return pool


def update(uow: UnitOfWork, pool_id: str, req: Request, caller: Caller = ADMIN) -> SubnetPool:
    pool = fetch(uow.session, DEFINITION, pool_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", pool, sent_attributes(DEFINITION, req))
    _may_change_scoped(uow, pool, caller)
    update_standard(pool, req)
    old = _prefixes(pool)
    nets = old
    if "prefixes" in req:
        if not _space(old).issubset(_space(req["prefixes"])):
            raise IllegalSubnetPoolPrefixUpdate(
                "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes."
            )
        nets = _compact(req["prefixes"])
    _bounds(pool, req, nets)
    if "is_default" in req:
        _make_default(uow, pool, req["is_default"])
    _join_scope(uow, pool, req.get("address_scope_id", pool.address_scope_id), nets, caller)
    if nets != old:
        pool.prefixes = [SubnetPoolPrefix(cidr=str(n)) for n in nets]
        prefix_blocks.add_ranges(uow.session, pool.id, _ranges(_space(nets) - _space(old)))
    if "default_quota" in req:
        pool.default_quota = req["default_quota"]
    touch(pool)
    uow.session.flush()
    return pool


def _body_prefixes(body: Any) -> list[IPNetwork]:
    if not isinstance(body, dict) or not body.get("prefixes") or not isinstance(body["prefixes"], list):
        raise HTTPBadRequest("Request body contains invalid data")
    try:
        return [parse_cidr(p) for p in body["prefixes"]]
    except Invalid as exc:
        raise HTTPBadRequest(f"Invalid input for prefixes. Reason: {exc}.") from None


def add_prefixes(uow: UnitOfWork, pool_id: str, body: Any, caller: Caller = ADMIN) -> SubnetPool:
    """PUT .../add_prefixes: an update to the current prefixes plus these, with all its checks."""
    wanted = _body_prefixes(body)
    current = _prefixes(get(uow, pool_id, caller))
    return update(uow, pool_id, Request({"prefixes": current + wanted}, ["prefixes"]), caller)


def remove_prefixes(uow: UnitOfWork, pool_id: str, body: Any, caller: Caller = ADMIN) -> SubnetPool:
    """PUT .../remove_prefixes: space no subnet of the pool uses leaves the pool (a prefix may split)."""
    removal = _space(_body_prefixes(body))
    pool = fetch(uow.session, DEFINITION, pool_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", pool, ["prefixes"])
    _may_change_scoped(uow, pool, caller)
    have = _space(_prefixes(pool))
    if have.isdisjoint(removal):
        return pool
    used = netaddr.IPSet(uow.session.scalars(select(Subnet.cidr).where(Subnet.subnetpool_id == pool.id)))
    if not used.isdisjoint(removal):
        raise IllegalSubnetPoolPrefixUpdate(
            "Illegal update to prefixes: One or more the prefixes to be removed is in use by a subnet."
        )
    remaining = have - removal
    pool.prefixes = [SubnetPoolPrefix(cidr=str(c)) for c in remaining.iter_cidrs()]
    for first, last in _ranges(have & removal):
        prefix_blocks.withdraw(uow.session, pool.id, first, last)
    touch(pool)
    uow.session.flush()
    return pool


def delete(uow: UnitOfWork, pool_id: str, caller: Caller = ADMIN) -> None:
    pool = fetch(uow.session, DEFINITION, pool_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "delete", pool)
    if uow.session.scalar(select(exists().where(Subnet.subnetpool_id == pool_id))):
        raise SubnetPoolInUse(f"Subnet pool {pool_id} is in use by one or more subnets.")
    uow.session.execute(sql_delete(SubnetPoolFreeBlock).where(SubnetPoolFreeBlock.subnetpool_id == pool_id))
    uow.session.delete(pool)
    uow.session.flush()


def allocate_prefix(uow: UnitOfWork, pool: SubnetPool, cidr: IPNetwork | None, prefixlen: int | None) -> IPNetwork:
    """A free prefix of the pool: ``cidr`` if given and free, else one of ``prefixlen`` from the free
    range that fits it most tightly (one index lookup, whatever the number of subnets in the pool).

    The caller holds the pool row locked, so two subnets cannot receive the same prefix.
    """
    if cidr is not None:
        first, last = int(cidr.network_address), int(cidr.broadcast_address)
        if cidr.version != pool.ip_version or not prefix_blocks.take_range(uow.session, pool.id, first, last):
            raise SubnetAllocationError(f"Failed to allocate subnet: cidr {cidr} is not free in subnet pool {pool.id}.")
        _check_len(pool, cidr.prefixlen)
        return cidr
    length = pool.default_prefixlen if prefixlen is None else prefixlen
    _check_len(pool, length)
    width = 32 if pool.ip_version == 4 else 128
    start = prefix_blocks.take_size(uow.session, pool.id, width - length)
    if start is None:
        raise SubnetAllocationError(f"Failed to allocate subnet: no /{length} prefix is free in subnet pool {pool.id}.")
    return ipaddress.ip_network(f"{int_to_ip(start, pool.ip_version)}/{length}")


def _check_len(pool: SubnetPool, length: int) -> None:
    if length > pool.max_prefixlen:
        raise MaxPrefixSubnetAllocationError(_length_message(pool, length))
    if length < pool.min_prefixlen:
        raise MinPrefixSubnetAllocationError(_length_message(pool, length))


def _length_message(pool: SubnetPool, length: int) -> str:
    return (
        f"Unable to allocate subnet with prefix length {length}, allowed prefix lengths are "
        f"{pool.min_prefixlen}-{pool.max_prefixlen}."
    )
