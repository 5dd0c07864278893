"""Subnet pools: prefixes from which subnets get their CIDR."""

from __future__ import annotations

import ipaddress

import netaddr
from sqlalchemy import delete as sql_delete
from sqlalchemy import exists, select

from pipam.db.models import Subnet, SubnetPool, SubnetPoolFreeBlock, SubnetPoolPrefix
from pipam.errors import (
    IllegalSubnetPoolPrefixBounds,
    IllegalSubnetPoolPrefixUpdate,
    InvalidInput,
    MaxPrefixSubnetAllocationError,
    MinPrefixSubnetAllocationError,
    SubnetAllocationError,
    SubnetPoolInUse,
    SubnetPoolNotFound,
)
from pipam.ipam.addr import IPNetwork, int_to_ip
from pipam.service import prefix_blocks
from pipam.service.attributes import Attr, Bool, Cidr, Int, ListOf, Request, Resource, Uuid, standard_attributes
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

MAX_PREFIXES = 1000

DEFINITION = Resource(
    singular="subnetpool",
    plural="subnetpools",
    model=SubnetPool,
    not_found=SubnetPoolNotFound,
    shared_column="shared",
    attributes=(
        *standard_attributes(),
        Attr(
            "prefixes",
            ListOf(Cidr(), max_items=MAX_PREFIXES),
            post=True,
            put=True,
            required=True,
            read=lambda pool: [p.cidr for p in pool.prefixes],
        ),
        Attr("ip_version", Int(), filter=True, sort=True),
        # Neutron shows the prefix lengths as strings.
        Attr("default_prefixlen", Int(0, 128, as_string=True), post=True, put=True, filter=True, sort=True),
        Attr("min_prefixlen", Int(0, 128, as_string=True), post=True, put=True, filter=True, sort=True),
        Attr("max_prefixlen", Int(0, 128, as_string=True), post=True, put=True, filter=True, sort=True),
        Attr("shared", Bool(), post=True, default=False, filter=True, sort=True, admin_only=True),
        Attr("is_default", Bool(), post=True, put=True, default=False, filter=True, sort=True, admin_only=True),
        Attr("default_quota", Int(0, nullable=True), post=True, put=True, default=None, filter=True, sort=True),
        Attr("address_scope_id", Uuid(nullable=True), post=True, put=True, default=None, filter=True, sort=True),
    ),
)


def get(uow: UnitOfWork, pool_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> SubnetPool:
    return get_visible(uow.session, DEFINITION, pool_id, caller, for_update=for_update)


def _merged(nets: list[IPNetwork]) -> list[IPNetwork]:
    if not nets:
        raise InvalidInput("Invalid input for prefixes. Reason: at least one prefix is required.")
    if len({n.version for n in nets}) != 1:
        raise InvalidInput("Invalid input for prefixes. Reason: all prefixes must be of one IP version.")
    # Overlapping or adjacent prefixes are merged, as Neutron does.
    return [ipaddress.ip_network(str(c)) for c in netaddr.cidr_merge([str(n) for n in nets])]


def _bounds(pool: SubnetPool, req: Request, nets: list[IPNetwork]) -> None:
    width = 32 if pool.ip_version == 4 else 128
    shortest = min(n.prefixlen for n in nets)
    min_len = req.get("min_prefixlen", pool.min_prefixlen if pool.min_prefixlen is not None else shortest)
    max_len = req.get("max_prefixlen", pool.max_prefixlen if pool.max_prefixlen is not None else width)
    default = req.get("default_prefixlen", pool.default_prefixlen if pool.default_prefixlen is not None else min_len)
    if max(min_len, max_len, default) > width or not min_len <= default <= max_len:
        raise IllegalSubnetPoolPrefixBounds(
            f"Illegal prefix bounds: min_prefixlen={min_len}, default_prefixlen={default}, max_prefixlen={max_len}."
        )
    pool.min_prefixlen, pool.max_prefixlen, pool.default_prefixlen = min_len, max_len, default


def _ranges(space: netaddr.IPSet) -> list[tuple[int, int]]:
    return [(r.first, r.last) for r in space.iter_ipranges()]


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN) -> SubnetPool:
    nets = _merged(req["prefixes"])
    pool = SubnetPool()
    new_standard(pool, req, caller)
    authorize_create(caller, DEFINITION, new_target(pool.project_id), sent_attributes(DEFINITION, req))
    pool.ip_version = nets[0].version
    pool.min_prefixlen = pool.max_prefixlen = pool.default_prefixlen = None  # type: ignore[assignment]
    _bounds(pool, req, nets)
    pool.shared = req["shared"]
    pool.is_default = req["is_default"]
    pool.default_quota = req["default_quota"]
    pool.address_scope_id = req["address_scope_id"]
    pool.prefixes = [SubnetPoolPrefix(cidr=str(n)) for n in nets]
    uow.session.add(pool)
    uow.session.flush()
    prefix_blocks.add_ranges(uow.session, pool.id, _ranges(netaddr.IPSet(map(str, nets))))
    return pool


def update(uow: UnitOfWork, pool_id: str, req: Request, caller: Caller = ADMIN) -> SubnetPool:
    pool = fetch(uow.session, DEFINITION, pool_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", pool, sent_attributes(DEFINITION, req))
    update_standard(pool, req)
    nets = [ipaddress.ip_network(p.cidr) for p in pool.prefixes]
    if "prefixes" in req:
        new = _merged(req["prefixes"])
        if new[0].version != pool.ip_version:
            raise InvalidInput("Invalid input for prefixes. Reason: IP version differs from the pool's.")
        old_set, new_set = netaddr.IPSet(map(str, nets)), netaddr.IPSet(map(str, new))
        if not old_set.issubset(new_set):
            raise IllegalSubnetPoolPrefixUpdate(
                "Illegal update to prefixes: prefixes of a subnet pool can only be added or extended."
            )
        pool.prefixes = [SubnetPoolPrefix(cidr=str(n)) for n in new]
        prefix_blocks.add_ranges(uow.session, pool.id, _ranges(new_set - old_set))
        nets = new
    _bounds(pool, req, nets)
    for key in ("is_default", "default_quota", "address_scope_id"):
        if key in req:
            setattr(pool, key, req[key])
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
