"""Subnet pools: prefixes from which subnets get their CIDR."""

from __future__ import annotations

import ipaddress
from typing import Any

import netaddr
from sqlalchemy import delete as sql_delete
from sqlalchemy import exists, select

from pipam.db.models import Subnet, SubnetPool, SubnetPoolFreeBlock, SubnetPoolPrefix
from pipam.errors import BadRequest, Conflict, InvalidInput
from pipam.ipam.addr import IPNetwork, int_to_ip, parse_cidr
from pipam.service import prefix_blocks
from pipam.service.common import (
    ADMIN,
    Caller,
    boolean,
    check_unknown,
    get_or_404,
    immutable,
    integer,
    require_owner,
    set_standard,
    standard_dict,
    touch,
    update_standard,
)
from pipam.service.database import UnitOfWork

KIND = "SubnetPool"
STANDARD = {"name", "description", "tags", "project_id", "tenant_id"}
CREATE = STANDARD | {
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "shared",
    "is_default",
    "default_quota",
    "address_scope_id",
    "ip_version",
}
UPDATE = CREATE - {"project_id", "tenant_id", "shared", "ip_version"}
MAX_PREFIXES = 1000


def to_dict(pool: SubnetPool) -> dict[str, Any]:
    return {
        **standard_dict(pool),
        "ip_version": pool.ip_version,
        "prefixes": [p.cidr for p in pool.prefixes],
        "default_prefixlen": pool.default_prefixlen,
        "min_prefixlen": pool.min_prefixlen,
        "max_prefixlen": pool.max_prefixlen,
        "shared": pool.shared,
        "is_default": pool.is_default,
        "default_quota": pool.default_quota,
        "address_scope_id": pool.address_scope_id,
    }


def get(uow: UnitOfWork, pool_id: str, caller: Caller = ADMIN, for_update: bool = False) -> SubnetPool:
    return get_or_404(uow.session, SubnetPool, pool_id, KIND, caller, for_update=for_update, shared_attr="shared")


def _prefixes(value: Any) -> list[IPNetwork]:
    if not isinstance(value, list) or not value or len(value) > MAX_PREFIXES:
        raise InvalidInput(f"Invalid input for prefixes. Reason: must be a list of 1 to {MAX_PREFIXES} CIDRs.")
    nets = [parse_cidr(p) for p in value]
    if len({n.version for n in nets}) != 1:
        raise InvalidInput("Invalid input for prefixes. Reason: all prefixes must be of one IP version.")
    # Overlapping or adjacent prefixes are merged, as Neutron does.
    return [ipaddress.ip_network(str(c)) for c in netaddr.cidr_merge([str(n) for n in nets])]


def _bounds(pool: SubnetPool, body: dict[str, Any], nets: list[IPNetwork]) -> None:
    width = 32 if pool.ip_version == 4 else 128
    shortest = min(n.prefixlen for n in nets)
    min_len = integer(
        body, "min_prefixlen", pool.min_prefixlen if pool.min_prefixlen is not None else shortest, 0, width
    )
    max_len = integer(body, "max_prefixlen", pool.max_prefixlen if pool.max_prefixlen is not None else width, 0, width)
    default = integer(
        body,
        "default_prefixlen",
        pool.default_prefixlen if pool.default_prefixlen is not None else min_len,
        0,
        width,
    )
    assert min_len is not None and max_len is not None and default is not None
    if not min_len <= default <= max_len:
        raise BadRequest(
            f"Illegal prefix bounds: min_prefixlen={min_len}, default_prefixlen={default}, max_prefixlen={max_len}.",
            type="IllegalSubnetPoolPrefixBounds",
        )
    pool.min_prefixlen, pool.max_prefixlen, pool.default_prefixlen = min_len, max_len, default


def create(uow: UnitOfWork, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    check_unknown(body, CREATE, KIND)
    nets = _prefixes(body.get("prefixes"))
    pool = SubnetPool()
    set_standard(pool, body, caller)
    pool.ip_version = nets[0].version
    if "ip_version" in body and integer(body, "ip_version", None) != pool.ip_version:
        raise InvalidInput("Invalid input: ip_version does not match the prefixes.")
    pool.min_prefixlen = pool.max_prefixlen = pool.default_prefixlen = None  # type: ignore[assignment]
    _bounds(pool, body, nets)
    pool.shared = boolean(body, "shared", False)
    pool.is_default = boolean(body, "is_default", False)
    pool.default_quota = integer(body, "default_quota", None, 0)
    scope = body.get("address_scope_id")
    if scope is not None and not isinstance(scope, str):
        raise InvalidInput("Invalid input for address_scope_id.")
    pool.address_scope_id = scope
    pool.prefixes = [SubnetPoolPrefix(cidr=str(n)) for n in nets]
    uow.session.add(pool)
    uow.session.flush()
    prefix_blocks.add_ranges(uow.session, pool.id, _ranges(netaddr.IPSet(map(str, nets))))
    return to_dict(pool)


def _ranges(space: netaddr.IPSet) -> list[tuple[int, int]]:
    return [(r.first, r.last) for r in space.iter_ipranges()]


def update(uow: UnitOfWork, pool_id: str, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    immutable(body, ("ip_version", "shared", "project_id", "tenant_id"), KIND)
    check_unknown(body, UPDATE, KIND)
    pool = get(uow, pool_id, caller, for_update=True)
    require_owner(pool, caller, KIND)
    update_standard(pool, body)
    nets = [ipaddress.ip_network(p.cidr) for p in pool.prefixes]
    if "prefixes" in body:
        new = _prefixes(body["prefixes"])
        if new[0].version != pool.ip_version:
            raise InvalidInput("Invalid input for prefixes. Reason: IP version differs from the pool's.")
        old_set, new_set = netaddr.IPSet(map(str, nets)), netaddr.IPSet(map(str, new))
        if not old_set.issubset(new_set):
            raise BadRequest(
                "Illegal update to prefixes: prefixes of a subnet pool can only be added or extended.",
                type="IllegalSubnetPoolPrefixUpdate",
            )
        pool.prefixes = [SubnetPoolPrefix(cidr=str(n)) for n in new]
        prefix_blocks.add_ranges(uow.session, pool.id, _ranges(new_set - old_set))
        nets = new
    _bounds(pool, body, nets)
    if "is_default" in body:
        pool.is_default = boolean(body, "is_default", False)
    if "default_quota" in body:
        pool.default_quota = integer(body, "default_quota", None, 0)
    touch(pool)
    uow.session.flush()
    return to_dict(pool)


def delete(uow: UnitOfWork, pool_id: str, caller: Caller = ADMIN) -> None:
    pool = get(uow, pool_id, caller, for_update=True)
    require_owner(pool, caller, KIND)
    if uow.session.scalar(select(exists().where(Subnet.subnetpool_id == pool_id))):
        raise Conflict(f"Subnet pool {pool_id} is in use by one or more subnets.", type="SubnetPoolInUse")
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
            raise Conflict(
                f"Failed to allocate subnet: cidr {cidr} is not free in subnet pool {pool.id}.",
                type="SubnetAllocationError",
            )
        _check_len(pool, cidr.prefixlen)
        return cidr
    length = pool.default_prefixlen if prefixlen is None else prefixlen
    _check_len(pool, length)
    width = 32 if pool.ip_version == 4 else 128
    start = prefix_blocks.take_size(uow.session, pool.id, width - length)
    if start is None:
        raise Conflict(
            f"Failed to allocate subnet: no /{length} prefix is free in subnet pool {pool.id}.",
            type="SubnetAllocationError",
        )
    return ipaddress.ip_network(f"{int_to_ip(start, pool.ip_version)}/{length}")


def release_prefix(uow: UnitOfWork, pool_id: str, cidr: str) -> None:
    """A subnet of the pool is gone: its prefix is free again."""
    get_or_404(uow.session, SubnetPool, pool_id, KIND, for_update=True)
    net = ipaddress.ip_network(cidr)
    prefix_blocks.give_back(uow.session, pool_id, int(net.network_address), int(net.broadcast_address))


def _check_len(pool: SubnetPool, length: int) -> None:
    if not pool.min_prefixlen <= length <= pool.max_prefixlen:
        raise BadRequest(
            f"Unable to allocate subnet with prefix length {length}, allowed prefix lengths are "
            f"{pool.min_prefixlen}-{pool.max_prefixlen}.",
            type="MaxPrefixSubnetAllocationError" if length > pool.max_prefixlen else "MinPrefixSubnetAllocationError",
        )
