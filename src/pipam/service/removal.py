"""Removing a subnet: shared by deleting the subnet itself and deleting its network."""

from __future__ import annotations

import ipaddress

from sqlalchemy import exists, select

from pipam.db.models import IPAllocation, Subnet, SubnetPool
from pipam.errors import SubnetInUse
from pipam.service import prefix_blocks
from pipam.service.allocation import is_auto_address
from pipam.service.database import UnitOfWork


def remove_subnet(uow: UnitOfWork, subnet: Subnet) -> None:
    """Delete a subnet; its automatic (EUI-64) addresses go with it, any other allocation refuses."""
    if not is_auto_address(subnet) and uow.session.scalar(select(exists().where(IPAllocation.subnet_id == subnet.id))):
        raise SubnetInUse(
            f"Unable to complete operation on subnet {subnet.id}: One or more ports have an IP allocation "
            "from this subnet."
        )
    uow.addresses.subnet_removed(subnet)
    if subnet.subnetpool_id is not None:
        # The pool row is locked: prefixes of one pool are handed out and given back one at a time.
        uow.session.get(SubnetPool, subnet.subnetpool_id, with_for_update=True)
        net = ipaddress.ip_network(subnet.cidr)
        prefix_blocks.give_back(uow.session, subnet.subnetpool_id, int(net.network_address), int(net.broadcast_address))
    uow.session.delete(subnet)
    uow.session.flush()
