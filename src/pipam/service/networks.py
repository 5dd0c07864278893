"""Networks: containers of subnets and ports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from pipam.db.models import Network, Port, Subnet
from pipam.errors import Conflict
from pipam.service import subnets as subnet_service
from pipam.service.common import (
    ADMIN,
    Caller,
    boolean,
    check_unknown,
    get_or_404,
    integer,
    require_owner,
    set_standard,
    standard_dict,
    touch,
    update_standard,
)
from pipam.service.database import UnitOfWork

KIND = "Network"
STANDARD = {"name", "description", "tags", "project_id", "tenant_id"}
CREATE = STANDARD | {
    "admin_state_up",
    "shared",
    "mtu",
    "router:external",
    "port_security_enabled",
    "availability_zone_hints",
}
UPDATE = CREATE - {"project_id", "tenant_id"}


def to_dict(uow: UnitOfWork, net: Network) -> dict[str, Any]:
    subnet_ids = uow.session.scalars(select(Subnet.id).where(Subnet.network_id == net.id).order_by(Subnet.id))
    return {
        **standard_dict(net),
        "admin_state_up": net.admin_state_up,
        "shared": net.shared,
        "status": net.status,
        "mtu": net.mtu,
        "subnets": list(subnet_ids),
        "router:external": False,
        "port_security_enabled": True,
        "availability_zone_hints": [],
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "is_default": False,
        "l2_adjacency": True,
    }


def get(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN) -> Network:
    return get_or_404(uow.session, Network, network_id, KIND, caller, shared_attr="shared")


def create(uow: UnitOfWork, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    check_unknown(body, CREATE, KIND)
    net = Network()
    set_standard(net, body, caller)
    net.admin_state_up = boolean(body, "admin_state_up", True)
    net.shared = boolean(body, "shared", False)
    net.mtu = integer(body, "mtu", 1500, 68, 65535) or 1500
    net.status = "ACTIVE"
    uow.session.add(net)
    uow.session.flush()
    return to_dict(uow, net)


def update(uow: UnitOfWork, network_id: str, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    check_unknown(body, UPDATE, KIND)
    net = get(uow, network_id, caller)
    require_owner(net, caller, KIND)
    update_standard(net, body)
    if "admin_state_up" in body:
        net.admin_state_up = boolean(body, "admin_state_up", True)
    if "shared" in body:
        net.shared = boolean(body, "shared", False)
    if "mtu" in body:
        net.mtu = integer(body, "mtu", 1500, 68, 65535) or 1500
    touch(net)
    uow.session.flush()
    return to_dict(uow, net)


def delete(uow: UnitOfWork, network_id: str, caller: Caller = ADMIN) -> None:
    net = get_or_404(uow.session, Network, network_id, KIND, caller, for_update=True)
    require_owner(net, caller, KIND)
    if uow.session.scalar(select(exists().where(Port.network_id == network_id))):
        raise Conflict(
            f"Unable to complete operation on network {network_id}. "
            "There are one or more ports still in use on the network.",
            type="NetworkInUse",
        )
    for subnet in uow.session.scalars(select(Subnet).where(Subnet.network_id == network_id)).all():
        subnet_service.remove(uow, subnet)
    uow.session.delete(net)
    uow.session.flush()
