"""Networks: containers of subnets and ports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select

from pipam.db.models import Network, Port, Subnet
from pipam.errors import InvalidInput, NetworkInUse, NetworkMtuSubnetConflict, NetworkNotFound
from pipam.service.attributes import Attr, Bool, Int, ListOf, Request, Resource, Str, Uuid, standard_attributes
from pipam.service.common import new_standard, touch, update_standard
from pipam.service.database import UnitOfWork
from pipam.service.policy import (
    ADMIN,
    Caller,
    Target,
    authorize,
    authorize_create,
    can_read,
    check,
    fetch,
    get_visible,
    new_target,
    sent_attributes,
)
from pipam.service.removal import remove_subnet


def _subnets_for(net: Network, caller: Caller) -> list[str]:
    """The ids of the network's subnets the caller may read (a subnet is its network's child)."""
    if caller.admin:
        return [s.id for s in net.subnet_ids]
    return [
        s.id for s in net.subnet_ids if check(caller, "get_subnet", Target(s.project_id, net.shared, net.project_id))
    ]


# The smallest MTU a subnet of each IP version works with (RFC 791, RFC 8200); the API reference
# states them for net-mtu-writable.
MIN_MTU = {4: 68, 6: 1280}


def _address_scope(version: int) -> Callable[[Network], str | None]:
    """Extension address-scope: the scope of the pools the network's subnets of ``version`` came from
    (one at most: subnets of one IP version on a network share their pool's scope)."""

    def read(net: Network) -> str | None:
        return next(
            (s.address_scope_id for s in net.subnet_ids if s.ip_version == version and s.address_scope_id), None
        )

    return read


DEFINITION = Resource(
    singular="network",
    plural="networks",
    model=Network,
    not_found=NetworkNotFound,
    shared_column="shared",
    attributes=(
        *standard_attributes(),
        Attr("admin_state_up", Bool(), post=True, put=True, default=True, filter=True, sort=True),
        Attr("shared", Bool(), post=True, put=True, default=False, filter=True, sort=True, admin_only=True),
        Attr("status", Str(16), filter=True, sort=True),
        # Extensions net-mtu and net-mtu-writable: 0 (or absent) means the largest, global_physnet_mtu.
        Attr("mtu", Int(0), post=True, put=True, filter=True, sort=True),
        # Extension external-net: filterable, not sortable, set by admins only.
        Attr("router:external", Bool(), post=True, put=True, default=False, filter=True, admin_only=True),
        Attr("ipv4_address_scope", Uuid(nullable=True), read=_address_scope(4), related="subnet_ids"),
        Attr("ipv6_address_scope", Uuid(nullable=True), read=_address_scope(6), related="subnet_ids"),
        Attr(
            "subnets",
            ListOf(Uuid()),
            read=lambda net: [s.id for s in net.subnet_ids],
            read_for=_subnets_for,
            related="subnet_ids",
        ),
    ),
)


def get(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> Network:
    return get_visible(uow.session, DEFINITION, network_id, caller, for_update=for_update)


@dataclass(frozen=True)
class SubnetRow:
    """A subnet as allocation needs it (``pipam.service.allocation.SubnetFacts``)."""

    id: str
    ip_version: int
    cidr: str
    gateway_ip: str | None
    ipv6_address_mode: str | None


@dataclass(frozen=True)
class NetworkFacts:
    """What creating a port on a network needs of it: its owner, whether it is shared, its subnets."""

    id: str
    project_id: str
    shared: bool
    subnets: tuple[SubnetRow, ...]  # oldest first


_NETWORKS = Network.__table__.c
_SUBNETS = Subnet.__table__.c
_SUBNET_ROW = (
    _SUBNETS.id.label("subnet_id"),
    _SUBNETS.ip_version,
    _SUBNETS.cidr,
    _SUBNETS.gateway_ip,
    _SUBNETS.ipv6_address_mode,
)
_OLDEST_FIRST = (_SUBNETS.created_at, _SUBNETS.id)
_FACTS = (
    select(_NETWORKS.id, _NETWORKS.project_id, _NETWORKS.shared, *_SUBNET_ROW)
    .select_from(Network.__table__.outerjoin(Subnet.__table__, _SUBNETS.network_id == _NETWORKS.id))
    .where(_NETWORKS.id == bindparam("network_id"))
    .order_by(*_OLDEST_FIRST)
)
_SUBNETS_OF = select(*_SUBNET_ROW).where(_SUBNETS.network_id == bindparam("network_id")).order_by(*_OLDEST_FIRST)


def _subnet_rows(rows: Iterable[Any]) -> tuple[SubnetRow, ...]:
    return tuple(
        SubnetRow(r.subnet_id, r.ip_version, r.cidr, r.gateway_ip, r.ipv6_address_mode)
        for r in rows
        if r.subnet_id is not None  # the outer join's row of a network without subnets
    )


def facts(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN) -> NetworkFacts:
    """The network and its subnets as the caller may read the network, in one Core statement (every port
    create makes it; ORM objects and a second read for the subnets cost more than the allocation)."""
    valid = isinstance(network_id, str) and len(network_id) <= 36 and "\x00" not in network_id
    rows = uow.session.connection().execute(_FACTS, {"network_id": network_id}).all() if valid else []
    if not rows:
        raise DEFINITION.missing(str(network_id)[:64])
    first = rows[0]
    network = NetworkFacts(first.id, first.project_id, bool(first.shared), _subnet_rows(rows))
    if not can_read(uow.session, caller, DEFINITION, network):
        raise DEFINITION.missing(network_id)
    return network


def subnets_of(uow: UnitOfWork, network_id: str) -> tuple[SubnetRow, ...]:
    """The subnets of a network already known (a port's), oldest first, as allocation needs them."""
    return _subnet_rows(uow.session.connection().execute(_SUBNETS_OF, {"network_id": network_id}))


def _mtu(uow: UnitOfWork, requested: int) -> int:
    largest = uow.settings.global_physnet_mtu
    if requested > largest:
        raise InvalidInput(f"Invalid input for operation: Requested MTU is too big, maximum is {largest}.")
    return requested or largest


def check_mtu_allows(net: Network, version: int) -> None:
    """A subnet of ``version`` on ``net`` needs at least that version's minimum MTU."""
    if net.mtu < MIN_MTU[version]:
        raise NetworkMtuSubnetConflict(
            f"Network {net.id} has MTU {net.mtu}, below {MIN_MTU[version]}, the minimum for an IPv{version} subnet."
        )


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN) -> Network:
    net = Network()
    new_standard(net, req, caller)
    authorize_create(caller, DEFINITION, new_target(net.project_id), sent_attributes(DEFINITION, req, create=True))
    net.admin_state_up = req["admin_state_up"]
    net.shared = req["shared"]
    net.router_external = req["router_external"]
    net.mtu = _mtu(uow, req.get("mtu", 0))
    net.status = "ACTIVE"
    uow.session.add(net)
    uow.session.flush()
    return net


def update(uow: UnitOfWork, network_id: str, req: Request, caller: Caller = ADMIN) -> Network:
    net = fetch(uow.session, DEFINITION, network_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", net, sent_attributes(DEFINITION, req))
    update_standard(net, req)
    for key in ("admin_state_up", "shared", "router_external"):
        if key in req:
            setattr(net, key, req[key])
    if "mtu" in req:
        mtu = _mtu(uow, req["mtu"])
        versions = uow.session.scalars(select(Subnet.ip_version).where(Subnet.network_id == net.id).distinct())
        for version in sorted(versions):
            if mtu < MIN_MTU[version]:
                raise NetworkMtuSubnetConflict(
                    f"Requested MTU {mtu} of network {net.id} is below {MIN_MTU[version]}, the minimum for its "
                    f"IPv{version} subnets."
                )
        net.mtu = mtu
    touch(net)
    uow.session.flush()
    return net


def delete(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN) -> None:
    net = fetch(uow.session, DEFINITION, network_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "delete", net)
    if uow.session.scalar(select(exists().where(Port.network_id == network_id))):
        raise NetworkInUse(
            f"Unable to complete operation on network {network_id}. "
            "There are one or more ports still in use on the network."
        )
    for subnet in uow.session.scalars(select(Subnet).where(Subnet.network_id == network_id)).all():
        remove_subnet(uow, subnet)
    uow.session.delete(net)
    uow.session.flush()
