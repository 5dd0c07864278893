"""The contract between the service and an IPAM backend.

A *driver* (the pool object) creates, updates and removes subnets and can list everything it holds;
a *subnet* object hands out and takes back addresses. Drivers are instantiated per transaction with a
:class:`DriverContext`; database drivers work inside ``context.session``, a driver that talks to an
outside system registers an undo with ``context.on_rollback``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import netaddr
from sqlalchemy.orm import Session

from pipam.ipam.addr import IPAddress, IPNetwork

# --- address requests -------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecificAddressRequest:
    address: IPAddress


@dataclass(frozen=True)
class AnyAddressRequest:
    """Any free address of the subnet's pools; drivers spread these to keep servers apart."""


@dataclass(frozen=True)
class PreferNextAddressRequest:
    """The lowest free address of the subnet's pools."""


@dataclass(frozen=True)
class AutomaticAddressRequest:
    """The EUI-64 address of ``mac`` (IPv6 SLAAC and DHCPv6-stateless subnets)."""

    mac: str


@dataclass(frozen=True)
class BulkAddressRequest:
    """``count`` addresses at once, all or none."""

    count: int


AddressRequest = (
    SpecificAddressRequest | AnyAddressRequest | PreferNextAddressRequest | AutomaticAddressRequest | BulkAddressRequest
)

# --- subnet requests --------------------------------------------------------------------------

Pool = tuple[IPAddress, IPAddress]


@dataclass(frozen=True)
class SpecificSubnetRequest:
    subnet_id: str
    cidr: IPNetwork
    gateway_ip: IPAddress | None
    allocation_pools: tuple[Pool, ...]


@dataclass(frozen=True)
class AnySubnetRequest:
    """Any free prefix of ``prefixlen`` from a subnet pool; the prefix allocator turns it specific."""

    subnet_id: str
    ip_version: int
    prefixlen: int


SubnetRequest = SpecificSubnetRequest | AnySubnetRequest

# --- what a driver holds ----------------------------------------------------------------------


@dataclass
class SubnetState:
    """One subnet as a backend (or the core tables) sees it; compared by the migration."""

    subnet_id: str
    cidr: str
    pools: list[tuple[str, str]]
    allocations: netaddr.IPSet = field(default_factory=netaddr.IPSet)


@dataclass
class DriverContext:
    session: Session
    settings: Any = None
    rollback_hooks: list[Callable[[], None]] = field(default_factory=list)

    def on_rollback(self, undo: Callable[[], None]) -> None:
        self.rollback_hooks.append(undo)


# --- the protocols ----------------------------------------------------------------------------


@runtime_checkable
class IpamSubnet(Protocol):
    subnet_id: str

    def allocate(self, request: AddressRequest) -> list[str]:
        """Hand out addresses; raises IpAddressAlreadyAllocated / IpAddressGenerationFailure."""
        ...

    def deallocate(self, address: str) -> None: ...


@runtime_checkable
class IpamDriver(Protocol):
    name: ClassVar[str]
    deprecated: ClassVar[bool]
    # A shared driver (an outside IPAM used by other systems too) may hold addresses Pipam did not
    # allocate: the migration reports them as conflicts or foreign instead of replacing them.
    shared: ClassVar[bool]

    def __init__(self, context: DriverContext) -> None: ...

    def allocate_subnet(self, request: SpecificSubnetRequest) -> IpamSubnet: ...

    def get_subnet(self, subnet_id: str) -> IpamSubnet: ...

    def update_subnet(self, request: SpecificSubnetRequest) -> IpamSubnet: ...

    def remove_subnet(self, subnet_id: str) -> None: ...

    # migration support: together these list everything a backend holds
    def dump_subnet(self, subnet_id: str) -> SubnetState | None:
        """What this backend holds for one subnet (CIDR, pools, allocated set); None if nothing."""
        ...

    def subnet_ids(self, after: str | None, limit: int) -> list[str]:
        """Ids of the core subnets this backend holds state for, in order, resuming after ``after``."""
        ...

    def import_subnet(self, state: SubnetState, core_allocations: list[str]) -> None:
        """Make this backend hold exactly ``state`` for one subnet (replacing what it held)."""
        ...

    def counts(self) -> dict[str, int]:
        """How many subnets, pools and allocations this backend's own tables hold."""
        ...

    def purge(self) -> dict[str, int]:
        """Delete everything this backend holds (stale-data cleanup); returns counts deleted."""
        ...
