"""Ports: a MAC on a network and the addresses it holds (the core ``ipallocations`` rows)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import joinedload, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from pipam.db.base import new_id
from pipam.db.engine import UNPREPARED
from pipam.db.models import IPAllocation, Port, Subnet
from pipam.errors import (
    GatewayIpInUse,
    HTTPBadRequest,
    InvalidInput,
    InvalidIpForNetwork,
    InvalidIpForSubnet,
    IpAddressGenerationFailure,
    MacAddressGenerationFailure,
    MacAddressInUse,
    PipamError,
    PortNotFound,
    UnsupportedPortDeviceOwner,
)
from pipam.ipam.addr import to_key
from pipam.ipam.interface import SpecificAddressRequest
from pipam.service.allocation import Held, SubnetFacts, Wanted, address_request, is_auto_address
from pipam.service.attributes import (
    Attr,
    Bool,
    Ip,
    ListOf,
    Mac,
    Record,
    Request,
    Resource,
    Str,
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
    fetch,
    get_visible,
    new_target,
    sent_attributes,
)
from pipam.service.resources import networks, subnets

MAX_FIXED_IPS = 20


def _fixed_ips_filter(values: list[str]) -> Any:
    """``fixed_ips=ip_address=10.0.0.5`` / ``subnet_id=X`` / ``ip_address_substr=10.0``: ports holding one."""
    conditions = []
    for value in values:
        key, _, wanted = value.partition("=")
        if "\x00" in wanted:
            raise InvalidInput("Invalid input for fixed_ips. Reason: NUL characters are not allowed.")
        if key == "ip_address":
            conditions.append(IPAllocation.ip_address == wanted)
        elif key == "subnet_id":
            conditions.append(IPAllocation.subnet_id == wanted)
        elif key == "ip_address_substr":
            conditions.append(IPAllocation.ip_address.contains(wanted, autoescape=True))
        else:
            raise HTTPBadRequest(
                f"Invalid fixed_ips filter '{value}': use ip_address=, subnet_id= or ip_address_substr="
            )
    return Port.id.in_(select(IPAllocation.port_id).where(or_(*conditions)))


FIXED_IP = Record({"subnet_id": Uuid(), "ip_address": Ip()})

DEFINITION = Resource(
    singular="port",
    plural="ports",
    model=Port,
    not_found=PortNotFound,
    extra_filters={"fixed_ips": _fixed_ips_filter},
    attributes=(
        # Ports are the resource whose create body takes tags (tag-ports-during-bulk-creation).
        *standard_attributes(tags_on_create=True),
        Attr("network_id", Uuid(), post=True, required=True, filter=True, sort=True),
        # An admin may change it; null asks for a new random one (port-mac-address-regenerate).
        Attr("mac_address", Mac(nullable=True), post=True, put=True, filter=True, sort=True, admin_only_on_update=True),
        Attr("admin_state_up", Bool(), post=True, put=True, default=True, filter=True, sort=True),
        Attr("status", Str(16), filter=True, sort=True),
        Attr("device_id", Str(255), post=True, put=True, default="", filter=True, sort=True),
        Attr("device_owner", Str(255), post=True, put=True, default="", filter=True, sort=True),
        Attr(
            "fixed_ips",
            ListOf(FIXED_IP, max_items=MAX_FIXED_IPS),
            post=True,
            put=True,
            # The rows hold text (``Held``, ``ipallocations``): new dicts of it are already the wire form.
            read=lambda port: [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in port.fixed_ips],
            shown_as_read=True,
            related="fixed_ips",
        ),
    ),
)


def get(uow: UnitOfWork, port_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> Port:
    return get_visible(uow.session, DEFINITION, port_id, caller, for_update=for_update)


def _is_router(device_owner: str) -> bool:
    return device_owner.startswith("network:router")


def _policy_attributes(req: Request) -> list[str]:
    """The attributes a request sets, and which parts of fixed_ips it names (each has a rule)."""
    names = sent_attributes(DEFINITION, req)
    entries = req.get("fixed_ips") or []
    for part in ("subnet_id", "ip_address"):
        if any(e.get(part) is not None for e in entries):
            names.append(f"fixed_ips:{part}")
    return names


_PORT_COLUMNS = [c.key for c in Port.__table__.columns]
_INSERT_PORTS = insert(Port.__table__)


def _insert(uow: UnitOfWork, made: list[Port]) -> None:
    """Insert new ports with one Core statement and keep them in the session as if just loaded: an ORM
    flush of one new object cost more than the address allocation after it. Every column is set here."""
    if not made:
        return  # an executemany of no rows would insert one row of defaults
    for port in made:
        port.id = new_id()
    uow.session.connection().execute(_INSERT_PORTS, [{key: getattr(p, key) for key in _PORT_COLUMNS} for p in made])
    for port in made:
        make_transient_to_detached(port)
        uow.session.add(port)


def _show(uow: UnitOfWork, port: Port, held: list[Held]) -> None:
    """Make ``port.fixed_ips`` the rows just inserted (as Core rows), without reading them back."""
    rows = []
    for h in sorted(held, key=lambda h: to_key(h.ip_address)):
        row = IPAllocation(
            ip_address=h.ip_address,
            subnet_id=h.subnet_id,
            ip_key=to_key(h.ip_address),
            port_id=port.id,
            network_id=port.network_id,
        )
        make_transient_to_detached(row)
        uow.session.add(row)  # persistent, as if loaded: a later flush does not insert it again
        rows.append(row)
    set_committed_value(port, "fixed_ips", rows)


def _wanted(
    uow: UnitOfWork,
    entries: list[dict[str, Any]],
    network_id: str,
    device_owner: str,
    mac: str,
    caller: Caller,
    on_network: Sequence[SubnetFacts] | None = None,
    batch: _Batch | None = None,
) -> list[Wanted]:
    """Each ``fixed_ips`` entry as a typed address request on one subnet of the port's network (whose
    subnets, when already read, are ``on_network``; a bulk's ``batch`` reads each named subnet once)."""
    wanted: list[Wanted] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        ip = entry.get("ip_address")
        subnet: SubnetFacts
        if entry.get("subnet_id") is not None:
            if batch is not None:
                subnet = batch.subnet(entry["subnet_id"], network_id)
            else:
                subnet = subnets.on_network(uow, entry["subnet_id"], network_id, caller)
            if ip is not None and (ip.version != subnet.ip_version or ip not in ipaddress.ip_network(subnet.cidr)):
                raise InvalidIpForSubnet(str(ip))
        elif ip is not None:
            if on_network is None:
                on_network = networks.subnets_of(uow, network_id)
            found = [s for s in on_network if s.ip_version == ip.version and ip in ipaddress.ip_network(s.cidr)]
            if not found:
                raise InvalidIpForNetwork(
                    f"IP address {ip} is not a valid IP for any of the subnets on the specified network."
                )
            subnet = found[0]
        else:
            raise InvalidInput("Invalid input for fixed_ips. Reason: an entry needs subnet_id or ip_address.")
        if ip is not None and is_auto_address(subnet) and not _is_router(device_owner):
            raise InvalidInput(
                f"IPv6 address {ip} cannot be directly assigned to a port on subnet {subnet.id} with "
                f"{subnet.ipv6_address_mode} address mode."
            )
        if ip is not None and str(ip) == subnet.gateway_ip and not _is_router(device_owner):
            raise GatewayIpInUse(
                f"IP address {ip} is the gateway of subnet {subnet.id}; only a router port may hold it."
            )
        if ip is not None:
            if (subnet.id, str(ip)) in seen:
                raise InvalidInput(f"Invalid input for fixed_ips. Reason: duplicate IP address {ip}.")
            seen.add((subnet.id, str(ip)))
        wanted.append(Wanted(subnet, address_request(subnet, ip, mac)))
    return wanted


def _default_subnets(
    on_network: Sequence[SubnetFacts],
) -> tuple[list[SubnetFacts], list[SubnetFacts], list[SubnetFacts]]:
    """Where a port without fixed_ips takes its addresses: one any-address from the first IPv4 subnet
    with room, one from the first stateful IPv6 one with room, and one from every automatic (SLAAC) one."""
    v4 = [s for s in on_network if s.ip_version == 4]
    v6_stateful = [s for s in on_network if s.ip_version == 6 and not is_auto_address(s)]
    auto = [s for s in on_network if is_auto_address(s)]
    return v4, v6_stateful, auto


def _first_with_room(uow: UnitOfWork, port: Port, group: list[SubnetFacts]) -> list[Held]:
    """An any-address from the first subnet of ``group`` that has one (none when the group is empty)."""
    for i, subnet in enumerate(group):
        try:
            return uow.addresses.allocate(
                port.id, port.network_id, [Wanted(subnet, address_request(subnet, None, port.mac_address))]
            )
        except IpAddressGenerationFailure:
            if i == len(group) - 1:
                raise
    return []


def _automatic(uow: UnitOfWork, port: Port, auto: list[SubnetFacts]) -> list[Held]:
    """The port's EUI-64 address on every automatic subnet (a router port takes none)."""
    if _is_router(port.device_owner):
        return []
    wanted = [Wanted(s, address_request(s, None, port.mac_address)) for s in auto]
    return uow.addresses.allocate(port.id, port.network_id, wanted) if wanted else []


def _default_allocations(uow: UnitOfWork, port: Port, on_network: Sequence[SubnetFacts]) -> list[Held]:
    """No fixed_ips given: one IPv4, one stateful IPv6 address, and every automatic (SLAAC) one."""
    v4, v6_stateful, auto = _default_subnets(on_network)
    held: list[Held] = []
    for group in (v4, v6_stateful):
        held += _first_with_room(uow, port, group)
    return held + _automatic(uow, port, auto)


def _mac_in_use(uow: UnitOfWork, network_id: str, mac: str) -> bool:
    stmt = select(Port.id).where(Port.network_id == network_id, Port.mac_address == mac)
    return uow.session.scalar(stmt) is not None


def _random_mac() -> str:
    return "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def _mac(uow: UnitOfWork, wanted: str | None, network_id: str) -> str:
    """The MAC asked for, if no port of the network has it, or a new random one.

    A random one is not looked up first: the unique key on (network, MAC) refuses a collision at the
    port's insert, before any address is allocated, and the transaction is rerun with a new draw (one
    statement fewer on every port create; at 100,000 ports on one network 0.6 % of creates rerun)."""
    if wanted is None:
        return _random_mac()
    if _mac_in_use(uow, network_id, wanted):
        raise MacAddressInUse(
            f"Unable to complete operation for network {network_id}. The mac address {wanted} is in use."
        )
    return wanted


def _random_macs(uow: UnitOfWork, network_id: str, count: int) -> list[str]:
    """``count`` random MACs no port of the network has, distinct: for a bulk create, where one collision
    would rerun the whole batch (likely at scale: 1,000 draws among 100,000 ports). One query per round."""
    chosen: set[str] = set()
    for _ in range(16):
        drawn = {_random_mac() for _ in range(count - len(chosen))} - chosen
        # By MAC alone, on its own index: asked with the network too, PostgreSQL without statistics of
        # the table read every port of the network and compared each with all the MACs (revision 0005).
        # Another network's port with one of them is rare, and is left out here.
        check = select(Port.network_id, Port.mac_address).where(Port.mac_address.in_(drawn))
        found = uow.session.execute(check.execution_options(**UNPREPARED))
        chosen |= drawn - {mac for network, mac in found if network == network_id}
        if len(chosen) == count:
            return list(chosen)
    raise MacAddressGenerationFailure(f"Unable to generate a unique mac address on network {network_id}.")


def _change_mac(uow: UnitOfWork, port: Port, wanted: str | None, device_owner: str) -> None:
    """An admin's new MAC (or a new random one for null); the port's EUI-64 addresses follow it."""
    if wanted == port.mac_address:
        return
    if device_owner.startswith("network:"):
        raise UnsupportedPortDeviceOwner(
            f"Operation mac address update is not supported for device_owner {device_owner} on port {port.id}."
        )
    port.mac_address = _mac(uow, wanted, port.network_id)
    auto = [(a, uow.session.get(Subnet, a.subnet_id)) for a in port.fixed_ips]
    auto = [(a, subnet) for a, subnet in auto if subnet is not None and is_auto_address(subnet)]
    if auto:
        uow.addresses.release([Held(a.subnet_id, a.ip_address, port.id) for a, _ in auto])
        uow.session.expire(port, ["fixed_ips"])
        wanted_addresses = [Wanted(s, address_request(s, None, port.mac_address)) for _, s in auto]
        uow.addresses.allocate(port.id, port.network_id, wanted_addresses)
        uow.session.expire(port, ["fixed_ips"])


def _new_port(
    uow: UnitOfWork, req: Request, caller: Caller, batch: _Batch | None = None
) -> tuple[Port, list[Wanted] | None, networks.NetworkFacts]:
    """The port's row, checked but not written (``_insert`` does), the addresses its fixed_ips ask for
    (None: none given, the default allocations apply), and its network."""
    network = batch.network(req["network_id"]) if batch else networks.facts(uow, req["network_id"], caller)
    port = Port()
    new_standard(port, req, caller)
    target = new_target(port.project_id, network, {"device_owner": req["device_owner"]})
    authorize_create(caller, DEFINITION, target, _policy_attributes(req))
    port.network_id = network.id
    drawn = batch.mac(network.id) if batch and req.get("mac_address") is None else None
    port.mac_address = drawn or _mac(uow, req.get("mac_address"), network.id)
    port.admin_state_up = req["admin_state_up"]
    port.device_id = req["device_id"]
    port.device_owner = req["device_owner"]
    port.status = "DOWN"
    wanted = None
    if req.get("fixed_ips") is not None:
        wanted = _wanted(
            uow, req["fixed_ips"], network.id, port.device_owner, port.mac_address, caller, network.subnets, batch
        )
    return port, wanted, network


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN, batch: _Batch | None = None) -> Port:
    port, wanted, network = _new_port(uow, req, caller, batch)
    _insert(uow, [port])
    _place(uow, port, wanted, network.subnets)
    return port


def _place(uow: UnitOfWork, port: Port, wanted: list[Wanted] | None, on_network: Sequence[SubnetFacts]) -> None:
    """Allocate a written port's addresses: those it asked for, or the defaults (``wanted`` None)."""
    if wanted is None:
        held = _default_allocations(uow, port, on_network)
    else:
        held = uow.addresses.allocate(port.id, port.network_id, wanted) if wanted else []
    _show(uow, port, held)


class _Batch:
    """What the ports of one bulk create share: each network and named subnet read once, and random MACs
    drawn for all of a network's ports at once (one by one, a collision would rerun the whole bulk, and
    among 100,000 ports a 1,000-port bulk almost always has one)."""

    def __init__(self, uow: UnitOfWork, reqs: list[Request], caller: Caller) -> None:
        self.uow = uow
        self.caller = caller
        self.reqs = reqs
        self._networks: dict[str, networks.NetworkFacts] = {}
        self._subnets: dict[tuple[str, str], SubnetFacts] = {}
        self._macs: dict[str, list[str]] = {}

    def network(self, network_id: str) -> networks.NetworkFacts:
        if network_id not in self._networks:
            self._networks[network_id] = networks.facts(self.uow, network_id, self.caller)
        return self._networks[network_id]

    def subnet(self, subnet_id: str, network_id: str) -> SubnetFacts:
        """A subnet the bulk's fixed_ips name, checked once for the caller and the network."""
        key = (subnet_id, network_id)
        if key not in self._subnets:
            self._subnets[key] = subnets.on_network(self.uow, subnet_id, network_id, self.caller)
        return self._subnets[key]

    def mac(self, network_id: str) -> str:
        if network_id not in self._macs:
            count = sum(1 for r in self.reqs if r["network_id"] == network_id and r.get("mac_address") is None)
            self._macs[network_id] = _random_macs(self.uow, network_id, count)
        return self._macs[network_id].pop()


def create_many(uow: UnitOfWork, reqs: list[Request], caller: Caller = ADMIN) -> list[Port]:
    """A bulk create: what ``create`` of each request in turn gives (addresses, errors, all or nothing),
    but a run of ports that take their addresses alike (the defaults, or any-addresses of the same
    subnets) have their rows inserted together and their addresses claimed a batch per subnet."""
    batch = _Batch(uow, reqs, caller)
    run = _Run(uow, batch)
    made: list[Port] = []
    for req in reqs:
        if req.get("mac_address") is not None:
            run.write()  # its check reads the MACs in use, the ports before it included
        try:
            port, wanted, network = _new_port(uow, req, caller, batch)
        except PipamError:
            run.finish()  # one by one, an earlier port's failure came first
            raise
        made.append(port)
        way = _way(wanted)
        if way is None:
            # Named addresses, or a subnet named twice: one by one, the ports before it hold theirs first.
            run.finish()
            _insert(uow, [port])
            _place(uow, port, wanted, network.subnets)
            continue
        if not run.fits(way):
            run.finish()
        # A port that gives its MAC is written at once: a MAC drawn for a later port is checked against
        # the database.
        run.add(port, way, wanted or [], written=req.get("mac_address") is not None)
    run.finish()
    return made


_DEFAULTS: tuple[str, ...] = ()


def _way(wanted: list[Wanted] | None) -> tuple[str, ...] | None:
    """How a port of a bulk takes its addresses, for a run of ports that take them alike: ``_DEFAULTS``
    (no fixed_ips), or the ids of the subnets its fixed_ips name, when they name each once and give no
    address. None when the port goes on its own (an address given, a subnet named twice, ``[]``)."""
    if wanted is None:
        return _DEFAULTS
    ids = tuple(w.subnet.id for w in wanted)
    if not ids or len(set(ids)) < len(ids) or any(isinstance(w.request, SpecificAddressRequest) for w in wanted):
        return None
    return ids


class _Run:
    """Consecutive ports of a bulk that take their addresses the same way (``_way``). Their rows go in
    with one insert, their addresses a batch per subnet; ``finish`` before any other port is placed
    keeps the order of one create after the other."""

    def __init__(self, uow: UnitOfWork, batch: _Batch) -> None:
        self.uow = uow
        self.batch = batch
        self.way = _DEFAULTS
        self.ports: list[Port] = []
        self.asked: list[list[Wanted]] = []  # each port's fixed_ips
        self.unwritten: list[Port] = []

    def fits(self, way: tuple[str, ...]) -> bool:
        return not self.ports or way == self.way

    def add(self, port: Port, way: tuple[str, ...], asked: list[Wanted], written: bool) -> None:
        self.unwritten.append(port)
        if written:
            self.write()
        self.way = way
        self.ports.append(port)
        self.asked.append(asked)

    def write(self) -> None:
        _insert(self.uow, self.unwritten)
        self.unwritten = []

    def finish(self) -> None:
        """Write the run's rows and claim its addresses: raises the first failing port's error."""
        self.write()
        ports, asked, way = self.ports, self.asked, self.way
        self.ports, self.asked, self.way = [], [], _DEFAULTS
        if not ports:
            return
        if way == _DEFAULTS:
            _default_allocations_each(self.uow, ports, self.batch)
        else:
            _asked_allocations_each(self.uow, ports, asked)


def _show_each(uow: UnitOfWork, ports: list[Port], held: list[Held]) -> None:
    """``_show`` of each port with its own addresses among ``held``."""
    mine: dict[str, list[Held]] = {port.id: [] for port in ports}
    for h in held:
        mine[h.port_id].append(h)
    for port in ports:
        _show(uow, port, mine[port.id])


Failure = tuple[int, int, PipamError]  # the failing port's place in its run, the kind of address, the error


def _settle(uow: UnitOfWork, ports: list[Port], held: list[Held], failures: list[Failure]) -> None:
    """Raise the error one port after the other would have met first, the earliest port's and, within
    it, the kind of address it claims first; else give each port its addresses."""
    if failures:
        raise min(failures, key=lambda f: f[:2])[2]
    _show_each(uow, ports, held)


def _default_allocations_each(uow: UnitOfWork, ports: list[Port], batch: _Batch) -> None:
    """``_default_allocations`` of each port, with the same outcome as one port after the other (the
    first failing port's error), but one batch per (network, subnet) for the any-addresses.

    The IPv4, stateful IPv6 and automatic subnets of a network are disjoint, so each kind is done for
    all ports before the next: whether a port's allocation fails depends only on the ports before it.
    """
    plans: dict[str, tuple[list[SubnetFacts], list[SubnetFacts], list[SubnetFacts]]] = {}
    for port in ports:
        if port.network_id not in plans:
            plans[port.network_id] = _default_subnets(batch.network(port.network_id).subnets)
    held: list[Held] = []
    failures: list[Failure] = []
    for kind in (0, 1):  # the places of IPv4 and stateful IPv6 in _default_subnets' answer
        batches: dict[str, list[tuple[int, Port]]] = {}  # by the first candidate subnet
        for place, port in enumerate(ports):
            group = plans[port.network_id][kind]
            if group:
                batches.setdefault(group[0].id, []).append((place, port))
        for members in batches.values():
            rows, failed = _first_with_room_each(uow, members, plans[members[0][1].network_id][kind])
            held += rows
            if failed is not None:
                failures.append((failed[0], kind, failed[1]))
    # Each port's EUI-64 address on every automatic subnet of its network, in the network's order: the
    # j-th such subnet is the kind 2 + j (a router port takes none).
    automatic: dict[str, tuple[int, SubnetFacts, list[tuple[int, Port]]]] = {}
    for place, port in enumerate(ports):
        if not _is_router(port.device_owner):
            for j, subnet in enumerate(plans[port.network_id][2]):
                automatic.setdefault(subnet.id, (2 + j, subnet, []))[2].append((place, port))
    for kind, subnet, members in automatic.values():
        rows, failed = _eui64_each(uow, members, subnet)
        held += rows
        if failed is not None:
            failures.append((failed[0], kind, failed[1]))
    _settle(uow, ports, held, failures)


def _asked_allocations_each(uow: UnitOfWork, ports: list[Port], asked: list[list[Wanted]]) -> None:
    """``allocate`` of each port's fixed_ips, which name the same subnets for every port, each once and
    with no address: the outcome of one port after the other, but each subnet's any-addresses claimed as
    one batch. As in ``allocate``, a port's automatic (EUI-64) addresses come before its any-addresses.
    The subnets are disjoint, so whether a
    port fails on one depends only on the ports before it on that one."""
    first = asked[0]
    held: list[Held] = []
    failures: list[Failure] = []
    members = list(enumerate(ports))
    for kind, at in enumerate(sorted(range(len(first)), key=lambda i: not first[i].named)):
        if first[at].named:  # automatic: _way leaves out given addresses
            rows, failed = _eui64_each(uow, members, first[at].subnet)
        else:
            rows, failed = _first_with_room_each(uow, members, [first[at].subnet])
        held += rows
        if failed is not None:
            failures.append((failed[0], kind, failed[1]))
    _settle(uow, ports, held, failures)


def _eui64_each(
    uow: UnitOfWork, members: list[tuple[int, Port]], subnet: SubnetFacts
) -> tuple[list[Held], tuple[int, PipamError] | None]:
    """The EUI-64 address of each member port on the automatic ``subnet``, as one port after the other
    gets them: those held, and the place and error of the first port that failed, if one did. One
    backend call for all of them where the backend takes them in bulk (all or none); one by one where
    it does not, or to find which port failed."""
    if len(members) > 1 and uow.addresses.automatic_in_bulk:
        ports = [(port.id, port.mac_address) for _, port in members]
        try:
            return uow.addresses.allocate_automatic_each(ports, members[0][1].network_id, subnet), None
        except PipamError:
            pass  # nothing taken: one by one below finds the port
    held: list[Held] = []
    for place, port in members:
        try:
            wanted = [Wanted(subnet, address_request(subnet, None, port.mac_address))]
            held += uow.addresses.allocate(port.id, port.network_id, wanted)
        except PipamError as exc:
            return held, (place, exc)
    return held, None


def _first_with_room_each(
    uow: UnitOfWork, members: list[tuple[int, Port]], group: list[SubnetFacts]
) -> tuple[list[Held], tuple[int, IpAddressGenerationFailure] | None]:
    """``_first_with_room`` of each port in order (all on one network): the addresses, and the place
    and error of the first port that found no room, if one did.

    Each subnet in turn gets the remaining ports as one batch; when it has fewer free addresses, it
    fills one port at a time (as create() would, nothing frees meanwhile) and the rest go on to the next.
    """
    held: list[Held] = []
    start = 0
    error = IpAddressGenerationFailure(members[0][1].network_id)
    for subnet in group:
        rest = [port for _, port in members[start:]]
        if len(rest) > 1:
            try:
                return held + uow.addresses.allocate_each([p.id for p in rest], rest[0].network_id, subnet), None
            except IpAddressGenerationFailure:
                pass  # nothing taken: one by one below
        for port in rest:
            try:
                held += _first_with_room(uow, port, [subnet])
            except IpAddressGenerationFailure as exc:
                error = exc
                break
            start += 1
        if start == len(members):
            return held, None
    return held, (members[start][0], error)


# An update or a delete reads the port with its addresses in one statement (the relationship's own
# loading would send a second).
_WITH_ADDRESSES = (joinedload(Port.fixed_ips),)


def update(uow: UnitOfWork, port_id: str, req: Request, caller: Caller = ADMIN) -> Port:
    port = fetch(uow.session, DEFINITION, port_id, for_update=True, options=_WITH_ADDRESSES)
    authorize(uow.session, caller, DEFINITION, "update", port, _policy_attributes(req), req)
    update_standard(port, req)
    if "mac_address" in req:
        _change_mac(uow, port, req["mac_address"], req.get("device_owner") or port.device_owner)
    for key in ("admin_state_up", "device_id", "device_owner"):
        if key in req:
            setattr(port, key, req[key])
    if req.get("fixed_ips") is not None:
        _change_fixed_ips(
            uow, port, _wanted(uow, req["fixed_ips"], port.network_id, port.device_owner, port.mac_address, caller)
        )
    touch(port)
    uow.session.flush()
    # _change_mac and _change_fixed_ips expire the port's addresses when they change them, so the answer
    # reads them again then; an update that leaves them alone (a VM's binding) answers what was read.
    return port


def _change_fixed_ips(uow: UnitOfWork, port: Port, wanted: list[Wanted]) -> None:
    """Keep what is asked for again, release the rest, then allocate the new: all in one transaction."""
    remaining = list(port.fixed_ips)
    to_add: list[Wanted] = []
    for item in wanted:
        named = getattr(item.request, "address", None)
        match = next(
            (a for a in remaining if a.subnet_id == item.subnet.id and (named is None or a.ip_address == str(named))),
            None,
        )
        if match is None:
            to_add.append(item)
        else:
            remaining.remove(match)
    auto = {a.subnet_id for a in remaining if is_auto_address(uow.session.get(Subnet, a.subnet_id))}
    released = [Held(a.subnet_id, a.ip_address, port.id) for a in remaining if a.subnet_id not in auto]
    if not released and not to_add:
        return
    uow.addresses.release(released)
    uow.session.expire(port, ["fixed_ips"])
    uow.addresses.allocate(port.id, port.network_id, to_add)


def delete(uow: UnitOfWork, port_id: str, caller: Caller = ADMIN) -> None:
    # The network's owner may delete any port on it (Neutron's delete_port), even one it cannot read.
    port = fetch(uow.session, DEFINITION, port_id, for_update=True, options=_WITH_ADDRESSES)
    authorize(uow.session, caller, DEFINITION, "delete", port)
    held = [Held(a.subnet_id, a.ip_address, port.id) for a in port.fixed_ips]
    if held:
        uow.addresses.release(held)
        # Its rows are gone (the port's row lock kept others from adding one): said, not read back, so
        # that the delete's cascade has nothing to load (a statement on every port delete).
        set_committed_value(port, "fixed_ips", [])
    uow.session.delete(port)
    uow.session.flush()
