"""Ports: a MAC on a network and the addresses it holds (the core ``ipallocations`` rows)."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select

from pipam.db.models import IPAllocation, Port, Subnet
from pipam.errors import BadRequest, Conflict, InvalidInput
from pipam.ipam.addr import normalise_mac, parse_ip, to_key
from pipam.ipam.errors import InvalidIpForSubnet, IpAddressAlreadyAllocated, IpAddressGenerationFailure
from pipam.ipam.interface import (
    AddressRequest,
    AnyAddressRequest,
    AutomaticAddressRequest,
    IpamSubnet,
    SpecificAddressRequest,
)
from pipam.service import networks
from pipam.service.common import (
    ADMIN,
    Caller,
    boolean,
    check_unknown,
    get_or_404,
    immutable,
    require_owner,
    set_standard,
    standard_dict,
    text,
    touch,
    update_standard,
)
from pipam.service.database import UnitOfWork
from pipam.service.subnets import is_auto_address, subnet_of

KIND = "Port"
MAX_FIXED_IPS = 20
STANDARD = {"name", "description", "tags", "project_id", "tenant_id"}
# Accepted for client compatibility; Pipam keeps no state for them.
PASSIVE = {
    "security_groups",
    "allowed_address_pairs",
    "port_security_enabled",
    "extra_dhcp_opts",
    "binding:vnic_type",
    "binding:host_id",
    "binding:profile",
    "dns_name",
    "qos_policy_id",
    "propagate_uplink_status",
}
CREATE = (
    STANDARD
    | PASSIVE
    | {"network_id", "mac_address", "admin_state_up", "device_id", "device_owner", "fixed_ips", "status"}
)
UPDATE = CREATE - {"network_id", "project_id", "tenant_id", "mac_address", "status"}


@dataclass(frozen=True)
class Wanted:
    """One entry of ``fixed_ips`` after validation."""

    subnet: Subnet
    ip: str | None  # None: the backend chooses

    def request(self, mac: str) -> AddressRequest:
        if self.ip is not None:
            return SpecificAddressRequest(ipaddress.ip_address(self.ip))
        if is_auto_address(self.subnet):
            return AutomaticAddressRequest(mac)
        return AnyAddressRequest()


def to_dict(port: Port) -> dict[str, Any]:
    return {
        **standard_dict(port),
        "network_id": port.network_id,
        "mac_address": port.mac_address,
        "admin_state_up": port.admin_state_up,
        "status": port.status,
        "device_id": port.device_id,
        "device_owner": port.device_owner,
        "fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in port.fixed_ips],
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "security_groups": [],
        "port_security_enabled": True,
        "binding:vnic_type": "normal",
        "ip_allocation": "immediate",
        "dns_name": "",
        "dns_assignment": [],
    }


def get(uow: UnitOfWork, port_id: str, caller: Caller = ADMIN, for_update: bool = False) -> Port:
    return get_or_404(uow.session, Port, port_id, KIND, caller, for_update=for_update)


def _is_router(device_owner: str) -> bool:
    return device_owner.startswith("network:router")


def _parse_fixed_ips(uow: UnitOfWork, value: Any, network_id: str, device_owner: str) -> list[Wanted]:
    if not isinstance(value, list):
        raise InvalidInput("Invalid input for fixed_ips. Reason: must be a list.")
    if len(value) > MAX_FIXED_IPS:
        raise InvalidInput(f"Invalid input for fixed_ips. Reason: at most {MAX_FIXED_IPS} entries.")
    subnets = None
    wanted: list[Wanted] = []
    for entry in value:
        if not isinstance(entry, dict) or not entry or set(entry) - {"subnet_id", "ip_address"}:
            raise InvalidInput(f"Invalid input for fixed_ips. Reason: '{entry}' is not {{subnet_id, ip_address}}.")
        ip = parse_ip(entry["ip_address"]) if entry.get("ip_address") is not None else None
        if entry.get("subnet_id") is not None:
            subnet = subnet_of(uow, entry["subnet_id"], network_id)
            if ip is not None and (ip.version != subnet.ip_version or ip not in ipaddress.ip_network(subnet.cidr)):
                raise InvalidIpForSubnet(str(ip))
        elif ip is not None:
            if subnets is None:
                subnets = uow.session.scalars(select(Subnet).where(Subnet.network_id == network_id)).all()
            found = [s for s in subnets if s.ip_version == ip.version and ip in ipaddress.ip_network(s.cidr)]
            if not found:
                raise BadRequest(
                    f"IP address {ip} is not a valid IP for any of the subnets on the specified network.",
                    type="InvalidIpForNetwork",
                )
            subnet = found[0]
        else:
            raise InvalidInput("Invalid input for fixed_ips. Reason: an entry needs subnet_id or ip_address.")
        if ip is not None and is_auto_address(subnet) and not _is_router(device_owner):
            raise BadRequest(
                f"IPv6 address {ip} cannot be directly assigned to a port on subnet {subnet.id} with "
                f"{subnet.ipv6_address_mode} address mode.",
                type="InvalidInput",
            )
        if ip is not None and str(ip) == subnet.gateway_ip and not _is_router(device_owner):
            raise Conflict(
                f"IP address {ip} is the gateway of subnet {subnet.id}; only a router port may hold it.",
                type="GatewayIpInUse",
            )
        item = Wanted(subnet, str(ip) if ip is not None else None)
        if item.ip is not None and any(w.ip == item.ip and w.subnet.id == subnet.id for w in wanted):
            raise InvalidInput(f"Invalid input for fixed_ips. Reason: duplicate IP address {item.ip}.")
        wanted.append(item)
    return wanted


def specific_first(wanted: list[Wanted]) -> list[Wanted]:
    """Named addresses before chosen ones, so that a random choice cannot take one the request names."""
    return sorted(wanted, key=lambda w: w.ip is None)


class Allocator:
    """Allocations of one operation, through the active backend, mirrored in the core table."""

    def __init__(self, uow: UnitOfWork, port: Port) -> None:
        self.uow = uow
        self.port = port
        self.driver = uow.ipam()
        self._subnets: dict[str, IpamSubnet] = {}

    def subnet(self, subnet_id: str) -> IpamSubnet:
        if subnet_id not in self._subnets:
            self._subnets[subnet_id] = self.driver.get_subnet(subnet_id)
        return self._subnets[subnet_id]

    def allocate(self, wanted: Wanted) -> list[str]:
        session = self.uow.session
        if wanted.ip is not None and session.get(IPAllocation, (wanted.ip, wanted.subnet.id)) is not None:
            raise IpAddressAlreadyAllocated(wanted.ip, wanted.subnet.id)
        try:
            ips = self.subnet(wanted.subnet.id).allocate(wanted.request(self.port.mac_address))
        except IpAddressGenerationFailure:
            raise IpAddressGenerationFailure(self.port.network_id) from None
        # A Core insert: the unit-of-work flush would cost more than the allocation itself.
        session.connection().execute(
            insert(IPAllocation),
            [
                {
                    "ip_address": ip,
                    "subnet_id": wanted.subnet.id,
                    "ip_key": to_key(ip),
                    "port_id": self.port.id,
                    "network_id": self.port.network_id,
                }
                for ip in ips
            ],
        )
        return ips

    def release(self, allocation: IPAllocation) -> None:
        stmt = sql_delete(IPAllocation).where(
            IPAllocation.ip_address == allocation.ip_address,
            IPAllocation.subnet_id == allocation.subnet_id,
            IPAllocation.port_id == allocation.port_id,
        )
        # Only the transaction that really deleted the row gives the address back: two concurrent
        # releases of one address must not put it into the free ranges twice.
        if self.uow.session.execute(stmt).rowcount == 1:
            self.subnet(allocation.subnet_id).deallocate(allocation.ip_address)
        if allocation in self.uow.session:
            self.uow.session.expunge(allocation)


def _default_allocations(uow: UnitOfWork, allocator_factory, port: Port) -> None:  # type: ignore[no-untyped-def]
    """No fixed_ips given: one IPv4, one stateful IPv6 address, and every automatic (SLAAC) one."""
    subnets = uow.session.scalars(
        select(Subnet).where(Subnet.network_id == port.network_id).order_by(Subnet.created_at, Subnet.id)
    ).all()
    if not subnets:
        return
    allocator: Allocator = allocator_factory()
    v4 = [s for s in subnets if s.ip_version == 4]
    v6_stateful = [s for s in subnets if s.ip_version == 6 and not is_auto_address(s)]
    for group in (v4, v6_stateful):
        for i, subnet in enumerate(group):
            try:
                allocator.allocate(Wanted(subnet, None))
                break
            except IpAddressGenerationFailure:
                if i == len(group) - 1:
                    raise
    if not _is_router(port.device_owner):
        for subnet in subnets:
            if is_auto_address(subnet):
                allocator.allocate(Wanted(subnet, None))


def _mac(uow: UnitOfWork, body: dict[str, Any], network_id: str) -> str:
    def in_use(mac: str) -> bool:
        stmt = select(Port.id).where(Port.network_id == network_id, Port.mac_address == mac)
        return uow.session.scalar(stmt) is not None

    if body.get("mac_address") is not None:
        mac = normalise_mac(body["mac_address"])
        if in_use(mac):
            raise Conflict(
                f"Unable to complete operation for network {network_id}. The mac address {mac} is in use.",
                type="MacAddressInUse",
            )
        return mac
    # A generated MAC that collides is simply drawn again (24 random bits collide often at scale).
    for _ in range(16):
        mac = "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
        if not in_use(mac):
            return mac
    raise Conflict(
        f"Unable to generate a unique mac address on network {network_id}.", type="MacAddressGenerationFailure"
    )


def create(uow: UnitOfWork, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    check_unknown(body, CREATE, KIND)
    network_id = body.get("network_id")
    if not isinstance(network_id, str):
        raise InvalidInput("Invalid input for network_id. Reason: a network_id is required.")
    network = networks.get(uow, network_id, caller)
    port = Port()
    set_standard(port, body, caller)
    port.network_id = network.id
    port.mac_address = _mac(uow, body, network.id)
    port.admin_state_up = boolean(body, "admin_state_up", True)
    port.device_id = text(body, "device_id")
    port.device_owner = text(body, "device_owner")
    port.status = "DOWN"
    wanted = None
    if body.get("fixed_ips") is not None:
        wanted = _parse_fixed_ips(uow, body["fixed_ips"], network.id, port.device_owner)
    uow.session.add(port)
    uow.session.flush()
    if wanted is None:
        _default_allocations(uow, lambda: Allocator(uow, port), port)
    elif wanted:
        allocator = Allocator(uow, port)
        for item in specific_first(wanted):
            allocator.allocate(item)
    uow.session.refresh(port, ["fixed_ips"])
    return to_dict(port)


def update(uow: UnitOfWork, port_id: str, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    immutable(body, ("network_id", "project_id", "tenant_id", "mac_address"), KIND)
    check_unknown(body, UPDATE, KIND)
    port = get(uow, port_id, caller, for_update=True)
    require_owner(port, caller, KIND)
    update_standard(port, body)
    if "admin_state_up" in body:
        port.admin_state_up = boolean(body, "admin_state_up", True)
    if "device_id" in body:
        port.device_id = text(body, "device_id")
    if "device_owner" in body:
        port.device_owner = text(body, "device_owner")
    if body.get("fixed_ips") is not None:
        _change_fixed_ips(uow, port, _parse_fixed_ips(uow, body["fixed_ips"], port.network_id, port.device_owner))
    touch(port)
    uow.session.flush()
    uow.session.refresh(port, ["fixed_ips"])
    return to_dict(port)


def _change_fixed_ips(uow: UnitOfWork, port: Port, wanted: list[Wanted]) -> None:
    """Keep what is asked for again, release the rest, then allocate the new: all in one transaction."""
    remaining = list(port.fixed_ips)
    to_add: list[Wanted] = []
    for item in wanted:
        match = next(
            (a for a in remaining if a.subnet_id == item.subnet.id and (item.ip is None or a.ip_address == item.ip)),
            None,
        )
        if match is None:
            to_add.append(item)
        else:
            remaining.remove(match)
    auto_subnets = {a.subnet_id for a in remaining if is_auto_address(uow.session.get(Subnet, a.subnet_id))}
    released = [a for a in remaining if a.subnet_id not in auto_subnets]
    if not released and not to_add:
        return
    allocator = Allocator(uow, port)
    for alloc in released:
        allocator.release(alloc)
    uow.session.expire(port, ["fixed_ips"])
    for item in specific_first(to_add):
        allocator.allocate(item)


def delete(uow: UnitOfWork, port_id: str, caller: Caller = ADMIN) -> None:
    port = get(uow, port_id, caller, for_update=True)
    require_owner(port, caller, KIND)
    if port.fixed_ips:
        allocator = Allocator(uow, port)
        for alloc in list(port.fixed_ips):
            allocator.release(alloc)
        uow.session.expire(port, ["fixed_ips"])
    uow.session.delete(port)
    uow.session.flush()
