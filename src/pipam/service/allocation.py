"""The allocation engine: the only code that turns address requests into backend calls and core rows.

Ports, the side effects of creating and deleting subnets (EUI-64 addresses of existing ports), the
migration's benchmarks: all of them allocate and release through :class:`AllocationEngine`, which
keeps the order the driver interface promises (``pipam.ipam.interface``): named addresses first,
the core row after the driver's allocation, the core row deleted before the driver's release. It
also journals every change while a migration copies into another backend.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, insert, select

from pipam.db.models import IPAllocation, Subnet
from pipam.db.transactions import Transaction
from pipam.errors import IpAddressAlreadyAllocated, IpAddressGenerationFailure
from pipam.ipam import state
from pipam.ipam.addr import IPAddress, to_key
from pipam.ipam.interface import (
    AddressRequest,
    AnyAddressRequest,
    AutomaticAddressRequest,
    AutomaticBulkRequest,
    BulkAddressRequest,
    DriverContext,
    IpamDriver,
    IpamSubnet,
    Pool,
    SpecificAddressRequest,
    SpecificSubnetRequest,
    answers_automatic_bulk,
)

AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")
# Built once: building it and its cache key per call cost 2% of a port create (bench.instructions).
_RECORD = insert(IPAllocation)

# name -> (driver class, its settings); raises IpamBackendUnavailable when this server cannot use it
Resolver = Callable[[str], tuple[type[IpamDriver], Any]]


class SubnetFacts(Protocol):
    """What allocation needs to know of a subnet: a :class:`Subnet`, or a row of these columns (the
    port create path reads them with one Core select instead of loading ORM objects)."""

    @property
    def id(self) -> str: ...
    @property
    def ip_version(self) -> int: ...
    @property
    def cidr(self) -> str: ...
    @property
    def gateway_ip(self) -> str | None: ...
    @property
    def ipv6_address_mode(self) -> str | None: ...


def is_auto_address(subnet: SubnetFacts) -> bool:
    """Addresses of this subnet come from the port's MAC (SLAAC / DHCPv6-stateless), not from a pool."""
    return subnet.ip_version == 6 and subnet.ipv6_address_mode in AUTO_ADDRESS_MODES


def address_request(subnet: SubnetFacts, ip: IPAddress | None, mac: str) -> AddressRequest:
    """The one place that decides what kind of request a fixed-IP entry is (Neutron's request factory)."""
    if ip is not None:
        return SpecificAddressRequest(ip)
    if is_auto_address(subnet):
        return AutomaticAddressRequest(mac)
    return AnyAddressRequest()


@dataclass(frozen=True)
class Wanted:
    """One address a port asks for, after validation."""

    subnet: SubnetFacts
    request: AddressRequest

    @property
    def named(self) -> bool:
        return isinstance(self.request, SpecificAddressRequest | AutomaticAddressRequest)


@dataclass(frozen=True)
class Held:
    """One address a port holds (a core ``ipallocations`` row)."""

    subnet_id: str
    ip_address: str
    port_id: str


def subnet_request(subnet: Subnet, pools: Sequence[Pool]) -> SpecificSubnetRequest:
    return SpecificSubnetRequest(
        subnet_id=subnet.id,
        cidr=ipaddress.ip_network(subnet.cidr),
        gateway_ip=ipaddress.ip_address(subnet.gateway_ip) if subnet.gateway_ip else None,
        allocation_pools=tuple(pools),
    )


class AllocationEngine:
    """Address changes of one transaction, through the backend the database records as active."""

    def __init__(self, tx: Transaction, resolve: Resolver) -> None:
        self.tx = tx
        self.session = tx.session
        self._resolve = resolve
        self._driver: IpamDriver | None = None
        self._context: DriverContext | None = None
        self._journal = False
        self._subnets: dict[str, IpamSubnet] = {}

    @property
    def driver(self) -> IpamDriver:
        """The active backend; entering the gate on first use (refused while the fence is up)."""
        if self._driver is None:
            status = state.enter(self.session)
            cls, settings = self._resolve(status.active)
            self._context = DriverContext(self.session, settings, self.tx.on_rollback)
            self._driver = cls(self._context)
            self._journal = status.shadow is not None
        return self._driver

    def subnet(self, subnet_id: str) -> IpamSubnet:
        if subnet_id not in self._subnets:
            self._subnets[subnet_id] = self.driver.get_subnet(subnet_id)
        return self._subnets[subnet_id]

    def _note(self, subnet_id: str, addresses: list[str] | None) -> None:
        if self._journal:
            state.journal(self.session, subnet_id, addresses)

    # --- ports ---------------------------------------------------------------------------------

    def allocate(self, port_id: str, network_id: str, wanted: Sequence[Wanted]) -> list[Held]:
        """Allocate every wanted address (named ones first) and record each in the core table."""
        rows: list[Held] = []
        for item in sorted(wanted, key=lambda w: not w.named):
            subnet_id = item.subnet.id
            if isinstance(item.request, SpecificAddressRequest):
                ip = str(item.request.address)
                if self.session.get(IPAllocation, (ip, subnet_id)) is not None:
                    raise IpAddressAlreadyAllocated(ip, subnet_id)
            subnet = self.subnet(subnet_id)
            assert self._context is not None
            self._context.holder = port_id
            try:
                ips = subnet.allocate(item.request)
            except IpAddressGenerationFailure:
                raise IpAddressGenerationFailure(network_id) from None
            new = [Held(subnet_id, ip, port_id) for ip in ips]
            self._record(network_id, subnet_id, new)
            rows += new
        return rows

    def allocate_each(self, port_ids: Sequence[str], network_id: str, subnet: SubnetFacts) -> list[Held]:
        """One any-address of ``subnet`` for each port (a bulk create's ports without fixed_ips): one
        backend call for all of them, one insert of their core rows. All or none: when the subnet has
        fewer free addresses than ports, raises IpAddressGenerationFailure (of the network, as
        ``allocate`` does) holding none, so the caller can go on to another subnet."""
        if not port_ids:
            return []
        try:
            request = BulkAddressRequest(len(port_ids), holders=tuple(port_ids))
            return self._hand_out(subnet, network_id, port_ids, request)
        except IpAddressGenerationFailure:
            raise IpAddressGenerationFailure(network_id) from None

    @property
    def automatic_in_bulk(self) -> bool:
        """Whether the active backend takes a bulk's EUI-64 addresses in one call (``automatic_bulk``)."""
        return answers_automatic_bulk(type(self.driver))

    def allocate_automatic_each(
        self, ports: Sequence[tuple[str, str]], network_id: str, subnet: SubnetFacts
    ) -> list[Held]:
        """The EUI-64 address on the automatic ``subnet`` of each (port id, MAC) of ``ports``: one backend
        call (``automatic_in_bulk`` only), one insert of their core rows. All or none: raises as the
        backend does (IpAddressAlreadyAllocated of the first address held) holding none."""
        if not ports:
            return []
        ids = [port_id for port_id, _ in ports]
        request = AutomaticBulkRequest(tuple(mac for _, mac in ports), holders=tuple(ids))
        return self._hand_out(subnet, network_id, ids, request)

    def _hand_out(
        self, subnet: SubnetFacts, network_id: str, port_ids: Sequence[str], request: AddressRequest
    ) -> list[Held]:
        """A bulk request of one address per port, its core rows inserted in one statement."""
        handle = self.subnet(subnet.id)
        assert self._context is not None
        self._context.holder = None  # each address has its own holder, in the request
        ips = handle.allocate(request)
        if len(ips) != len(port_ids):  # a driver bug; the core rows would pair addresses with wrong ports
            raise AssertionError(f"subnet {subnet.id}: asked for {len(port_ids)} addresses, got {len(ips)}")
        new = [Held(subnet.id, ip, port_id) for ip, port_id in zip(ips, port_ids, strict=True)]
        self._record(network_id, subnet.id, new)
        return new

    def _record(self, network_id: str, subnet_id: str, new: Sequence[Held]) -> None:
        """The core rows of addresses of one subnet the backend just handed out; journalled once."""
        # A Core insert: an ORM flush would cost more than the allocation itself.
        self.session.connection().execute(
            _RECORD,
            [
                {
                    "ip_address": h.ip_address,
                    "subnet_id": h.subnet_id,
                    "ip_key": to_key(h.ip_address),
                    "port_id": h.port_id,
                    "network_id": network_id,
                }
                for h in new
            ],
        )
        self._note(subnet_id, [h.ip_address for h in new])

    def release(self, held: Sequence[Held]) -> None:
        """Delete the core rows, then give back to the backend what this transaction really deleted."""
        for h in held:
            gone = self.session.execute(
                delete(IPAllocation).where(
                    IPAllocation.ip_address == h.ip_address,
                    IPAllocation.subnet_id == h.subnet_id,
                    IPAllocation.port_id == h.port_id,
                )
            ).rowcount
            # Two concurrent releases of one address: only the one that deleted the row gives it back.
            if gone == 1:
                self.subnet(h.subnet_id).deallocate(h.ip_address)
                self._note(h.subnet_id, [h.ip_address])

    # --- subnets -------------------------------------------------------------------------------

    def subnet_created(self, subnet: Subnet, pools: Sequence[Pool], ports: Sequence[tuple[str, str]]) -> list[Held]:
        """Register a new subnet with the backend; on an automatic-address subnet, give each of
        ``ports`` (id, MAC) its EUI-64 address, as Neutron does for ports already on the network."""
        handle = self.driver.allocate_subnet(subnet_request(subnet, pools))
        self._subnets[subnet.id] = handle
        self._note(subnet.id, None)
        held: list[Held] = []
        if is_auto_address(subnet):
            for port_id, mac in ports:
                held += self.allocate(port_id, subnet.network_id, [Wanted(subnet, AutomaticAddressRequest(mac))])
        return held

    def pools_changed(self, subnet: Subnet, pools: Sequence[Pool]) -> None:
        """Addresses now outside every pool stay allocated (Neutron allows such an update)."""
        self._subnets[subnet.id] = self.driver.update_subnet(subnet_request(subnet, pools))
        self._note(subnet.id, None)

    def subnet_removed(self, subnet: Subnet) -> None:
        """Release what the subnet still holds (only automatic addresses may remain), then forget it."""
        held = [
            Held(subnet.id, ip, port_id)
            for ip, port_id in self.session.execute(
                select(IPAllocation.ip_address, IPAllocation.port_id).where(IPAllocation.subnet_id == subnet.id)
            )
        ]
        self.release(held)
        self.driver.remove_subnet(subnet.id)
        self._subnets.pop(subnet.id, None)
        self._note(subnet.id, None)
