"""Networks: containers of subnets and ports."""

from __future__ import annotations

from sqlalchemy import exists, select

from pipam.db.models import Network, Port, Subnet
from pipam.errors import NetworkInUse, NetworkNotFound
from pipam.service.attributes import Attr, Bool, Int, ListOf, Request, Resource, Str, Uuid, standard_attributes
from pipam.service.common import new_standard, touch, update_standard
from pipam.service.database import UnitOfWork
from pipam.service.policy import (
    ADMIN,
    Caller,
    Target,
    authorize,
    authorize_create,
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
        Attr("mtu", Int(68, 65535), post=True, put=True, default=1500, filter=True, sort=True),
        Attr("subnets", ListOf(Uuid()), read=lambda net: [s.id for s in net.subnet_ids], read_for=_subnets_for),
    ),
)


def get(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> Network:
    return get_visible(uow.session, DEFINITION, network_id, caller, for_update=for_update)


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN) -> Network:
    net = Network()
    new_standard(net, req, caller)
    authorize_create(caller, DEFINITION, new_target(net.project_id), sent_attributes(DEFINITION, req))
    net.admin_state_up = req["admin_state_up"]
    net.shared = req["shared"]
    net.mtu = req["mtu"]
    net.status = "ACTIVE"
    uow.session.add(net)
    uow.session.flush()
    return net


def update(uow: UnitOfWork, network_id: str, req: Request, caller: Caller = ADMIN) -> Network:
    net = fetch(uow.session, DEFINITION, network_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", net, sent_attributes(DEFINITION, req))
    update_standard(net, req)
    for key in ("admin_state_up", "shared", "mtu"):
        if key in req:
            setattr(net, key, req[key])
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
