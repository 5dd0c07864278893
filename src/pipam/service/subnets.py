"""Subnets: a CIDR on a network, its gateway and allocation pools, registered with the backend."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select

from pipam.db.models import IPAllocation, IPAllocationPool, Network, Port, Subnet, SubnetPool
from pipam.errors import BadRequest, Conflict, InvalidInput
from pipam.ipam.addr import IPAddress, IPNetwork, parse_cidr, parse_ip, to_key
from pipam.ipam.interface import AutomaticAddressRequest, Pool, SpecificSubnetRequest
from pipam.service import subnetpools
from pipam.service.common import (
    ADMIN,
    Caller,
    boolean,
    check_unknown,
    get_or_404,
    immutable,
    integer,
    not_found,
    require_owner,
    set_standard,
    standard_dict,
    touch,
    update_standard,
)
from pipam.service.database import UnitOfWork
from pipam.service.pools import default_pools, parse_pools, validate_pools

KIND = "Subnet"
IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")
STANDARD = {"name", "description", "tags", "project_id", "tenant_id"}
CREATE = STANDARD | {
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "prefixlen",
    "dns_nameservers",
    "host_routes",
    "use_default_subnetpool",
    "service_types",
    "segment_id",
}
UPDATE = STANDARD - {"project_id", "tenant_id"} | {
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
    "service_types",
}
READ_ONLY = (
    "network_id",
    "ip_version",
    "cidr",
    "subnetpool_id",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "prefixlen",
    "project_id",
    "tenant_id",
)
MAX_DNS = 5
MAX_ROUTES = 20


def is_auto_address(subnet: Subnet) -> bool:
    return subnet.ip_version == 6 and subnet.ipv6_address_mode in AUTO_ADDRESS_MODES


def to_dict(subnet: Subnet) -> dict[str, Any]:
    return {
        **standard_dict(subnet),
        "network_id": subnet.network_id,
        "ip_version": subnet.ip_version,
        "cidr": subnet.cidr,
        "gateway_ip": subnet.gateway_ip,
        "allocation_pools": [{"start": p.first_ip, "end": p.last_ip} for p in subnet.allocation_pools],
        "enable_dhcp": subnet.enable_dhcp,
        "ipv6_ra_mode": subnet.ipv6_ra_mode,
        "ipv6_address_mode": subnet.ipv6_address_mode,
        "subnetpool_id": subnet.subnetpool_id,
        "dns_nameservers": list(subnet.dns_nameservers or []),
        "host_routes": list(subnet.host_routes or []),
        "service_types": [],
        "segment_id": None,
    }


def get(uow: UnitOfWork, subnet_id: str, caller: Caller = ADMIN, for_update: bool = False) -> Subnet:
    subnet = get_or_404(uow.session, Subnet, subnet_id, KIND, caller, for_update=for_update)
    return subnet


def _network(uow: UnitOfWork, body: dict[str, Any], caller: Caller) -> Network:
    network_id = body.get("network_id")
    if not isinstance(network_id, str):
        raise InvalidInput("Invalid input for network_id. Reason: a network_id is required.")
    # Locked: subnets of one network are checked for overlap, which two concurrent creates must not skip.
    net = get_or_404(uow.session, Network, network_id, "Network", caller, for_update=True, shared_attr="shared")
    return net


def _gateway(body: dict[str, Any], net: IPNetwork, default: IPAddress | None) -> IPAddress | None:
    if "gateway_ip" not in body:
        return default
    value = body["gateway_ip"]
    if value is None:
        return None
    gw = parse_ip(value, "gateway_ip")
    if gw.version != net.version or gw not in net:
        raise BadRequest(f"Gateway IP {gw} is not inside subnet {net}.", type="InvalidInput")
    if net.version == 4 and net.prefixlen < 31 and gw in (net.network_address, net.broadcast_address):
        raise BadRequest(f"Gateway IP {gw} cannot be the network or broadcast address of {net}.", type="InvalidInput")
    return gw


def _dns(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_DNS:
        raise InvalidInput(f"Invalid input for dns_nameservers. Reason: must be a list of at most {MAX_DNS} addresses.")
    out = [str(parse_ip(v, "nameserver")) for v in value]
    if len(set(out)) != len(out):
        raise InvalidInput("Invalid input for dns_nameservers. Reason: duplicate nameserver.")
    return out


def _routes(value: Any, version: int) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_ROUTES:
        raise InvalidInput(f"Invalid input for host_routes. Reason: must be a list of at most {MAX_ROUTES} routes.")
    out = []
    for route in value:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise InvalidInput(f"Invalid input for host_routes. Reason: '{route}' is not a {{destination, nexthop}}.")
        dest, hop = parse_cidr(route["destination"]), parse_ip(route["nexthop"], "nexthop")
        if dest.version != version or hop.version != version:
            raise InvalidInput("Invalid input for host_routes. Reason: IP version differs from the subnet's.")
        out.append({"destination": str(dest), "nexthop": str(hop)})
    return out


def _ipv6_modes(body: dict[str, Any], net: IPNetwork) -> tuple[str | None, str | None]:
    ra, addr = body.get("ipv6_ra_mode"), body.get("ipv6_address_mode")
    for key, value in (("ipv6_ra_mode", ra), ("ipv6_address_mode", addr)):
        if value is not None and value not in IPV6_MODES:
            raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not in {list(IPV6_MODES)}.")
        if value is not None and net.version == 4:
            raise InvalidInput(f"Invalid input: {key} is only valid for IPv6 subnets.")
    if ra is not None and addr is not None and ra != addr:
        raise InvalidInput(f"Invalid input: ipv6_ra_mode '{ra}' with ipv6_address_mode '{addr}' is not valid.")
    if (addr or ra) in AUTO_ADDRESS_MODES and net.prefixlen != 64:
        raise InvalidInput(
            f"Invalid CIDR {net} for IPv6 address mode: the EUI-64 address format requires a /64 prefix."
        )
    return ra, addr


def _pick_cidr(uow: UnitOfWork, body: dict[str, Any], caller: Caller) -> tuple[IPNetwork, SubnetPool | None]:
    cidr = parse_cidr(body["cidr"]) if body.get("cidr") is not None else None
    version = integer(body, "ip_version", None)
    if version is not None and version not in (4, 6):
        raise InvalidInput(f"Invalid input for ip_version. Reason: '{version}' is not in [4, 6].")
    pool_id = body.get("subnetpool_id")
    if pool_id is None and boolean(body, "use_default_subnetpool", False):
        pool_id = uow.session.scalar(
            select(SubnetPool.id).where(SubnetPool.is_default.is_(True), SubnetPool.ip_version == (version or 4))
        )
        if pool_id is None:
            raise BadRequest(f"No default subnet pool for IPv{version or 4} exists.", type="InvalidInput")
    if pool_id is None:
        if cidr is None:
            raise BadRequest("A cidr must be specified in the absence of a subnet pool.", type="BadRequest")
        if "prefixlen" in body:
            raise InvalidInput("Invalid input: prefixlen is only valid with a subnetpool_id.")
        if version is not None and version != cidr.version:
            raise InvalidInput(f"Invalid input: cidr {cidr} does not match ip_version {version}.")
        return cidr, None
    pool = subnetpools.get(uow, pool_id, caller, for_update=True)
    if version is not None and version != pool.ip_version:
        raise InvalidInput(f"Invalid input: ip_version {version} does not match subnet pool {pool.id}.")
    prefixlen = integer(body, "prefixlen", None, 0, 128)
    return subnetpools.allocate_prefix(uow, pool, cidr, prefixlen), pool


def _check_overlap(uow: UnitOfWork, network_id: str, net: IPNetwork, exclude: str | None = None) -> None:
    for sid, cidr in uow.session.execute(select(Subnet.id, Subnet.cidr).where(Subnet.network_id == network_id)):
        if sid != exclude and ipaddress.ip_network(cidr).overlaps(net):
            raise BadRequest(
                f"Invalid input for operation: Requested subnet with cidr: {net} for network: {network_id} "
                "overlaps with another subnet.",
                type="InvalidInput",
            )


def _pool_rows(subnet_id: str, pools: list[Pool]) -> list[IPAllocationPool]:
    return [
        IPAllocationPool(subnet_id=subnet_id, first_ip=str(a), last_ip=str(b), first_key=to_key(a), last_key=to_key(b))
        for a, b in pools
    ]


def _request(subnet: Subnet, pools: list[Pool]) -> SpecificSubnetRequest:
    return SpecificSubnetRequest(
        subnet_id=subnet.id,
        cidr=ipaddress.ip_network(subnet.cidr),
        gateway_ip=ipaddress.ip_address(subnet.gateway_ip) if subnet.gateway_ip else None,
        allocation_pools=tuple(pools),
    )


def create(uow: UnitOfWork, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    check_unknown(body, CREATE, KIND)
    network = _network(uow, body, caller)
    net, pool = _pick_cidr(uow, body, caller)
    _check_overlap(uow, network.id, net)
    gateway = _gateway(body, net, net.network_address + 1 if net.num_addresses > 2 else None)
    if body.get("allocation_pools") is not None:
        pools = parse_pools(body["allocation_pools"], net)
    else:
        pools = default_pools(net, gateway)
    validate_pools(pools, net, gateway)
    ra, addr = _ipv6_modes(body, net)

    subnet = Subnet()
    set_standard(subnet, body, caller)
    subnet.network_id = network.id
    subnet.ip_version = net.version
    subnet.cidr = str(net)
    subnet.gateway_ip = str(gateway) if gateway else None
    subnet.enable_dhcp = boolean(body, "enable_dhcp", True)
    subnet.ipv6_ra_mode, subnet.ipv6_address_mode = ra, addr
    subnet.subnetpool_id = pool.id if pool else None
    subnet.dns_nameservers = _dns(body.get("dns_nameservers") or [])
    subnet.host_routes = _routes(body.get("host_routes") or [], net.version)
    uow.session.add(subnet)
    uow.session.flush()
    subnet.allocation_pools = _pool_rows(subnet.id, pools)
    uow.session.flush()

    driver = uow.ipam()
    ipam_subnet = driver.allocate_subnet(_request(subnet, pools))
    if is_auto_address(subnet):
        # Existing ports on the network get their EUI-64 address in the new subnet, as in Neutron.
        ports = uow.session.scalars(select(Port).where(Port.network_id == network.id)).all()
        for port in ports:
            if port.device_owner.startswith("network:router"):
                continue
            for ip in ipam_subnet.allocate(AutomaticAddressRequest(port.mac_address)):
                uow.session.add(
                    IPAllocation(
                        ip_address=ip,
                        subnet_id=subnet.id,
                        ip_key=to_key(ip),
                        port_id=port.id,
                        network_id=network.id,
                    )
                )
    uow.session.flush()
    return to_dict(subnet)


def update(uow: UnitOfWork, subnet_id: str, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    immutable(body, READ_ONLY, KIND)
    check_unknown(body, UPDATE, KIND)
    subnet = get(uow, subnet_id, caller, for_update=True)
    require_owner(subnet, caller, KIND)
    net = ipaddress.ip_network(subnet.cidr)
    update_standard(subnet, body)
    current_gw = ipaddress.ip_address(subnet.gateway_ip) if subnet.gateway_ip else None
    gateway = _gateway(body, net, current_gw)
    current_pools = [
        (ipaddress.ip_address(p.first_ip), ipaddress.ip_address(p.last_ip)) for p in subnet.allocation_pools
    ]
    pools_changed = body.get("allocation_pools") is not None
    pools = parse_pools(body["allocation_pools"], net) if pools_changed else current_pools
    validate_pools(pools, net, gateway)
    subnet.gateway_ip = str(gateway) if gateway else None
    if "enable_dhcp" in body:
        subnet.enable_dhcp = boolean(body, "enable_dhcp", True)
    if "dns_nameservers" in body:
        subnet.dns_nameservers = _dns(body["dns_nameservers"] or [])
    if "host_routes" in body:
        subnet.host_routes = _routes(body["host_routes"] or [], net.version)
    if pools_changed:
        driver = uow.ipam()
        uow.session.execute(sql_delete(IPAllocationPool).where(IPAllocationPool.subnet_id == subnet.id))
        uow.session.expire(subnet, ["allocation_pools"])
        uow.session.add_all(_pool_rows(subnet.id, pools))
        uow.session.flush()
        # Addresses now outside every pool stay allocated (Neutron allows such an update).
        driver.update_subnet(_request(subnet, pools))
    touch(subnet)
    uow.session.flush()
    uow.session.refresh(subnet, ["allocation_pools"])
    return to_dict(subnet)


def delete(uow: UnitOfWork, subnet_id: str, caller: Caller = ADMIN) -> None:
    subnet = get(uow, subnet_id, caller, for_update=True)
    require_owner(subnet, caller, KIND)
    get_or_404(uow.session, Network, subnet.network_id, "Network", for_update=True)
    remove(uow, subnet)


def remove(uow: UnitOfWork, subnet: Subnet) -> None:
    """Delete a subnet; its automatic (EUI-64) addresses go with it, any other allocation refuses."""
    allocations = uow.session.scalars(select(IPAllocation).where(IPAllocation.subnet_id == subnet.id)).all()
    if allocations and not is_auto_address(subnet):
        raise Conflict(
            f"Unable to complete operation on subnet {subnet.id}: One or more ports have an IP allocation "
            "from this subnet.",
            type="SubnetInUse",
        )
    driver = uow.ipam()
    if allocations:
        ipam_subnet = driver.get_subnet(subnet.id)
        for alloc in allocations:
            uow.session.delete(alloc)
            ipam_subnet.deallocate(alloc.ip_address)
    driver.remove_subnet(subnet.id)
    if subnet.subnetpool_id is not None:
        subnetpools.release_prefix(uow, subnet.subnetpool_id, subnet.cidr)
    uow.session.delete(subnet)
    uow.session.flush()


def subnet_of(uow: UnitOfWork, subnet_id: str, network_id: str) -> Subnet:
    subnet = uow.session.get(Subnet, subnet_id) if isinstance(subnet_id, str) else None
    if subnet is None:
        raise not_found(KIND, str(subnet_id))
    if subnet.network_id != network_id:
        raise InvalidInput(
            f"Invalid input for operation: Failed to create port on network {network_id}, because "
            f"fixed_ips included invalid subnet {subnet_id}."
        )
    return subnet
