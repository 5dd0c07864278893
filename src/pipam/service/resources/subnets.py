"""Subnets: a CIDR on a network, its gateway and allocation pools, registered with the backend."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select

from pipam.db.models import IPAllocation, IPAllocationPool, Network, PoolScope, Port, Subnet, SubnetPool
from pipam.errors import (
    BadRequest,
    GatewayIpInUse,
    InvalidInput,
    NetworkAddressScopeAffinityError,
    NetworkSubnetPoolAffinityError,
    SubnetNotFound,
)
from pipam.ipam.addr import IPAddress, IPNetwork, to_key
from pipam.ipam.interface import Pool
from pipam.service.allocation import is_auto_address
from pipam.service.attributes import (
    Attr,
    Bool,
    Cidr,
    Int,
    Ip,
    ListOf,
    OneOf,
    Record,
    Request,
    Resource,
    Uuid,
    standard_attributes,
)
from pipam.service.common import new_standard, touch, update_standard
from pipam.service.database import UnitOfWork
from pipam.service.policy import (
    ADMIN,
    Caller,
    authorize,
    authorize_create,
    can_read,
    fetch,
    get_visible,
    new_target,
    sent_attributes,
)
from pipam.service.pools import default_pools, pools_of, validate_pools
from pipam.service.removal import remove_subnet
from pipam.service.resources import networks, subnetpools

IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
MAX_DNS = 5
MAX_ROUTES = 20


def _shared_filter(values: list[str]) -> Any:
    """A subnet is shared when its network is (Neutron: filterable, not shown)."""
    wanted = {networks.DEFINITION.by_name["shared"].kind.parse_filter(v) for v in values}
    return Subnet.network_id.in_(select(Network.id).where(Network.shared.in_(wanted)))


DEFINITION = Resource(
    singular="subnet",
    plural="subnets",
    model=Subnet,
    not_found=SubnetNotFound,
    extra_filters={"shared": _shared_filter},
    attributes=(
        *standard_attributes(),
        Attr("network_id", Uuid(), post=True, required=True, filter=True, sort=True),
        Attr("ip_version", Int(choices=(4, 6)), post=True, filter=True, sort=True),
        Attr("cidr", Cidr(nullable=True, canonical=True), post=True, filter=True, sort=True),
        Attr("prefixlen", Int(0, 128), post=True, visible=False),
        Attr("gateway_ip", Ip(nullable=True), post=True, put=True, filter=True, sort=True),
        Attr(
            "allocation_pools",
            ListOf(Record({"start": Ip(), "end": Ip()}, required=("start", "end"))),
            post=True,
            put=True,
            read=lambda s: [{"start": p.first_ip, "end": p.last_ip} for p in s.allocation_pools],
            related="allocation_pools",
        ),
        Attr("enable_dhcp", Bool(), post=True, put=True, default=True, filter=True, sort=True),
        Attr("ipv6_ra_mode", OneOf(IPV6_MODES, nullable=True), post=True, default=None, filter=True, sort=True),
        Attr("ipv6_address_mode", OneOf(IPV6_MODES, nullable=True), post=True, default=None, filter=True, sort=True),
        Attr("subnetpool_id", Uuid(nullable=True), post=True, default=None, filter=True, sort=True),
        Attr("use_default_subnetpool", Bool(), post=True, default=False, visible=False),
        Attr("dns_nameservers", ListOf(Ip(), max_items=MAX_DNS, unique=True), post=True, put=True, default=[]),
        Attr(
            "host_routes",
            ListOf(Record({"destination": Cidr(), "nexthop": Ip()}, required=("destination", "nexthop")), MAX_ROUTES),
            post=True,
            put=True,
            default=[],
        ),
    ),
)


def get(uow: UnitOfWork, subnet_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> Subnet:
    return get_visible(uow.session, DEFINITION, subnet_id, caller, for_update=for_update)


def _gateway(req: Request, net: IPNetwork, default: IPAddress | None) -> IPAddress | None:
    if "gateway_ip" not in req:
        return default
    gw = req["gateway_ip"]
    if gw is None:
        return None
    if gw.version != net.version or gw not in net:
        raise InvalidInput(f"Gateway IP {gw} is not inside subnet {net}.")
    if net.version == 4 and net.prefixlen < 31 and gw in (net.network_address, net.broadcast_address):
        raise InvalidInput(f"Gateway IP {gw} cannot be the network or broadcast address of {net}.")
    return gw


def _check_dhcp(net: IPNetwork) -> None:
    """Neutron's rules for a subnet served by DHCP (its _validate_subnet): room for a DHCP port
    besides the gateway, and no address kind a DHCP server cannot hand out."""
    if (net.version == 4 and net.prefixlen > 30) or (net.version == 6 and net.prefixlen > 126):
        reason = "Subnet has a prefix length that is incompatible with DHCP service enabled"
    elif net.is_multicast:
        reason = "Multicast IP subnet is not supported if enable_dhcp is True"
    elif net.is_loopback:
        reason = "Loopback IP subnet is not supported if enable_dhcp is True"
    elif net.is_link_local:
        reason = "Link-local IP subnet is not supported if enable_dhcp is True"
    elif net.version == 4 and int(net.network_address) == 0:
        reason = "First IP '0.0.0.0' of network is not supported if enable_dhcp is True"
    else:
        return
    raise InvalidInput(f"Invalid input for operation: {reason}.")


def _check_gateway_free(uow: UnitOfWork, subnet: Subnet, gateway: IPAddress | None) -> None:
    """A new gateway must not be an address a port already holds (a router's port may: the gateway is
    its interface), as a port create on the gateway is refused."""
    if gateway is None or str(gateway) == subnet.gateway_ip:
        return
    holder = uow.session.execute(
        select(Port.id, Port.device_owner)
        .join(IPAllocation, IPAllocation.port_id == Port.id)
        .where(IPAllocation.subnet_id == subnet.id, IPAllocation.ip_address == str(gateway))
    ).first()
    if holder is not None and not holder.device_owner.startswith("network:router"):
        raise GatewayIpInUse(f"Gateway ip {gateway} already in use by port {holder.id}. Unable to update.")


def _routes(routes: list[dict[str, Any]], version: int) -> list[dict[str, str]]:
    for route in routes:
        if route["destination"].version != version or route["nexthop"].version != version:
            raise InvalidInput("Invalid input for host_routes. Reason: IP version differs from the subnet's.")
    return [{"destination": str(r["destination"]), "nexthop": str(r["nexthop"])} for r in routes]


def _ipv6_modes(req: Request, net: IPNetwork) -> tuple[str | None, str | None]:
    ra, addr = req.get("ipv6_ra_mode"), req.get("ipv6_address_mode")
    for key, value in (("ipv6_ra_mode", ra), ("ipv6_address_mode", addr)):
        if value is not None and net.version == 4:
            raise InvalidInput(f"Invalid input: {key} is only valid for IPv6 subnets.")
    if ra is not None and addr is not None and ra != addr:
        raise InvalidInput(f"Invalid input: ipv6_ra_mode '{ra}' with ipv6_address_mode '{addr}' is not valid.")
    if (addr or ra) in ("slaac", "dhcpv6-stateless") and net.prefixlen != 64:
        raise InvalidInput(
            f"Invalid CIDR {net} for IPv6 address mode: the EUI-64 address format requires a /64 prefix."
        )
    return ra, addr


def _bad(message: str) -> BadRequest:
    return BadRequest(f"Bad subnets request: {message}.")


def _pool_of(uow: UnitOfWork, req: Request, caller: Caller) -> SubnetPool | None:
    """The subnet pool a create names, or the default pool of its IP version (default-subnetpools)."""
    cidr: IPNetwork | None = req.get("cidr")
    pool_id = req.get("subnetpool_id")
    if cidr is not None and "prefixlen" in req:
        raise _bad("cidr and prefixlen must not be supplied together")
    if pool_id is not None and req["use_default_subnetpool"]:
        raise _bad("subnetpool_id and use_default_subnetpool cannot both be specified")
    if pool_id is None and req["use_default_subnetpool"]:
        version = cidr.version if cidr is not None else req.get("ip_version")
        if version is None:
            raise _bad("ip_version must be specified in the absence of cidr and subnetpool_id")
        default = uow.session.scalar(select(SubnetPool).where(SubnetPool.default_ip_version == version))
        # Only a default pool the caller may read: another project's private default is not its default.
        if default is None or not can_read(uow.session, caller, subnetpools.DEFINITION, default):
            raise _bad(f"No default subnetpool found for IPv{version}")
        pool_id = default.id
    if pool_id is None:
        if cidr is None:
            raise _bad("a subnetpool must be specified in the absence of a cidr")
        return None
    pool = subnetpools.get(uow, pool_id, caller, for_update=True)
    version = req.get("ip_version")
    if version is not None and version != pool.ip_version:
        raise _bad(f"Cannot allocate IPv{version} subnet from IPv{pool.ip_version} subnet pool")
    return pool


def _version(req: Request, pool: SubnetPool | None) -> int:
    """The new subnet's IP version: its pool's, or its cidr's (a create names one or the other)."""
    if pool is not None:
        return pool.ip_version
    cidr: IPNetwork = req["cidr"]
    asked = req.get("ip_version")
    if asked is not None and asked != cidr.version:
        raise InvalidInput(f"Invalid input for operation: cidr '{cidr}' does not match the ip_version '{asked}'.")
    return cidr.version


def _check_affinity(uow: UnitOfWork, network_id: str, version: int, pool: SubnetPool | None) -> None:
    """Subnets of one IP version on a network come from one subnet pool, or from pools of one
    address scope; a subnet from no pool cannot join subnets from a pool, nor the reverse."""
    existing = uow.session.execute(
        select(Subnet.subnetpool_id, PoolScope.address_scope_id)
        .outerjoin(PoolScope, PoolScope.id == Subnet.subnetpool_id)
        .where(Subnet.network_id == network_id, Subnet.ip_version == version)
    ).all()
    scope = next((scope for _, scope in existing if scope is not None), None)
    if scope is not None and pool is not None and pool.address_scope_id != scope:
        raise NetworkAddressScopeAffinityError()
    for pool_id, _ in existing:
        if pool is None and pool_id is not None:
            raise NetworkSubnetPoolAffinityError()
        if pool is not None and pool_id != pool.id and scope is None:
            raise NetworkSubnetPoolAffinityError()


def _check_overlap(uow: UnitOfWork, network_id: str, net: IPNetwork) -> None:
    for (cidr,) in uow.session.execute(select(Subnet.cidr).where(Subnet.network_id == network_id)):
        if ipaddress.ip_network(cidr).overlaps(net):
            raise InvalidInput(
                f"Invalid input for operation: Requested subnet with cidr: {net} for network: {network_id} "
                "overlaps with another subnet."
            )


def _pool_rows(subnet_id: str, pools: list[Pool]) -> list[IPAllocationPool]:
    return [
        IPAllocationPool(subnet_id=subnet_id, first_ip=str(a), last_ip=str(b), first_key=to_key(a), last_key=to_key(b))
        for a, b in pools
    ]


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN) -> Subnet:
    # Locked: subnets of one network are checked for overlap and affinity, which two concurrent
    # creates must not skip.
    network = networks.get(uow, req["network_id"], caller, for_update=True)
    project = caller.owner_for(req)
    authorize_create(caller, DEFINITION, new_target(project, network), sent_attributes(DEFINITION, req, create=True))
    pool = _pool_of(uow, req, caller)
    version = _version(req, pool)
    networks.check_mtu_allows(network, version)
    _check_affinity(uow, network.id, version, pool)
    net = subnetpools.allocate_prefix(uow, pool, req.get("cidr"), req.get("prefixlen")) if pool else req["cidr"]
    _check_overlap(uow, network.id, net)
    if pool is None and req["enable_dhcp"]:
        _check_dhcp(net)  # as Neutron, only for a cidr given outright: a pool's prefixes are the admin's choice
    gateway = _gateway(req, net, net.network_address + 1 if net.num_addresses > 2 else None)
    given = req.get("allocation_pools")
    pools = pools_of(given, net) if given is not None else default_pools(net, gateway)
    validate_pools(pools, net, gateway)
    ra, addr = _ipv6_modes(req, net)

    subnet = Subnet()
    new_standard(subnet, req, caller)
    subnet.network_id = network.id
    subnet.ip_version = net.version
    subnet.cidr = str(net)
    subnet.gateway_ip = str(gateway) if gateway else None
    subnet.enable_dhcp = req["enable_dhcp"]
    subnet.ipv6_ra_mode, subnet.ipv6_address_mode = ra, addr
    subnet.subnetpool_id = pool.id if pool else None
    subnet.dns_nameservers = [str(ip) for ip in req["dns_nameservers"]]
    subnet.host_routes = _routes(req["host_routes"], net.version)
    uow.session.add(subnet)
    uow.session.flush()
    subnet.allocation_pools = _pool_rows(subnet.id, pools)
    uow.session.flush()

    ports: list[tuple[str, str]] = []
    if is_auto_address(subnet):
        # Existing ports on the network get their EUI-64 address in the new subnet, as in Neutron.
        ports = [
            (pid, mac)
            for pid, mac, owner in uow.session.execute(
                select(Port.id, Port.mac_address, Port.device_owner).where(Port.network_id == network.id)
            )
            if not owner.startswith("network:router")
        ]
    uow.addresses.subnet_created(subnet, pools, ports)
    touch(network)  # a network's subnets changed: a new revision of the network, as in Neutron
    uow.session.flush()
    return subnet


def update(uow: UnitOfWork, subnet_id: str, req: Request, caller: Caller = ADMIN) -> Subnet:
    subnet = fetch(uow.session, DEFINITION, subnet_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", subnet, sent_attributes(DEFINITION, req))
    net = ipaddress.ip_network(subnet.cidr)
    update_standard(subnet, req)
    current_gw = ipaddress.ip_address(subnet.gateway_ip) if subnet.gateway_ip else None
    gateway = _gateway(req, net, current_gw)
    _check_gateway_free(uow, subnet, gateway)
    if req.get("enable_dhcp") and not subnet.enable_dhcp:
        _check_dhcp(net)
    current_pools = [
        (ipaddress.ip_address(p.first_ip), ipaddress.ip_address(p.last_ip)) for p in subnet.allocation_pools
    ]
    pools_changed = req.get("allocation_pools") is not None
    pools = pools_of(req["allocation_pools"], net) if pools_changed else current_pools
    validate_pools(pools, net, gateway)
    subnet.gateway_ip = str(gateway) if gateway else None
    if "enable_dhcp" in req:
        subnet.enable_dhcp = req["enable_dhcp"]
    if "dns_nameservers" in req:
        subnet.dns_nameservers = [str(ip) for ip in req["dns_nameservers"] or []]
    if "host_routes" in req:
        subnet.host_routes = _routes(req["host_routes"] or [], net.version)
    if pools_changed:
        uow.session.execute(sql_delete(IPAllocationPool).where(IPAllocationPool.subnet_id == subnet.id))
        uow.session.expire(subnet, ["allocation_pools"])
        uow.session.add_all(_pool_rows(subnet.id, pools))
        uow.session.flush()
        uow.addresses.pools_changed(subnet, pools)
    touch(subnet)
    uow.session.flush()
    uow.session.refresh(subnet, ["allocation_pools"])
    return subnet


def delete(uow: UnitOfWork, subnet_id: str, caller: Caller = ADMIN) -> None:
    subnet = fetch(uow.session, DEFINITION, subnet_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "delete", subnet)
    network = networks.get(uow, subnet.network_id, for_update=True)
    remove_subnet(uow, subnet)
    touch(network)
    uow.session.flush()


def on_network(uow: UnitOfWork, subnet_id: str, network_id: str, caller: Caller = ADMIN) -> Subnet:
    """A subnet a port names in its fixed_ips: one the caller may read (others are unknown ids), on
    the port's network."""
    subnet = fetch(uow.session, DEFINITION, subnet_id)
    if not can_read(uow.session, caller, DEFINITION, subnet):
        raise DEFINITION.missing(subnet_id)
    if subnet.network_id != network_id:
        raise InvalidInput(
            f"Invalid input for operation: Failed to create port on network {network_id}, because "
            f"fixed_ips included invalid subnet {subnet_id}."
        )
    return subnet
