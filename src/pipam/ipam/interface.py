"""The contract between Pipam and an IPAM backend (a *driver*).

A driver object (Neutron's "pool") creates, updates and removes subnets and can list everything it
holds; a subnet object hands out and takes back addresses. Drivers are instantiated per transaction
with a :class:`DriverContext`.

Rules a driver may rely on (the allocation engine, ``pipam.service.allocation``, keeps them):

- Every call runs inside one database transaction of the request (``context.session``). A database
  driver writes through that session, so its changes commit or roll back with the request. A driver
  that changes an outside system registers an undo with ``context.on_rollback`` for every change;
  Pipam calls the undos, newest first, when the transaction does not commit.
- ``allocate_subnet``/``update_subnet`` are called after the core ``subnets`` and ``ipallocationpools``
  rows of the subnet are written in the same transaction; ``remove_subnet`` after every address of
  the subnet has been deallocated, before the core subnet row is deleted.
- ``IpamSubnet.allocate`` is called before the core ``ipallocations`` row exists; the engine inserts
  it after the call returns (the core table's primary key is the last guard against a duplicate).
  ``IpamSubnet.deallocate`` is called only after the engine deleted the core row, and only by the
  transaction that deleted it, so a driver never gives an address back twice.
- A bulk request of many ports (``BulkAddressRequest.holders``) is one call; the engine inserts the
  core rows of all its addresses after it returns, in one statement.
- The EUI-64 addresses of a bulk's ports on one automatic subnet are one ``AutomaticBulkRequest``
  for a driver that declares ``automatic_bulk = True``; any other driver gets an
  ``AutomaticAddressRequest`` per port.
- A request names its addresses first: specific and automatic (EUI-64) requests of one port are
  allocated before "any address" requests, so a random choice never takes an address the same
  request names.
- The migration calls ``import_subnet`` and ``IpamSubnet.reconcile`` on an inactive backend while
  another one serves requests; they must be idempotent.

Free space. What decides the next allocation is a backend's free space, so ``pipam ipam verify`` (and
a migration's verify) checks it too, in the way the driver declares with ``free_space_check``:

- ``"ranges"``: the backend keeps free space of its own (free ranges). ``free_space`` answers
  :class:`FreeRanges` per subnet, exactly as stored (a corrupt store may hold overlapping ranges:
  do not merge or clip them); verify checks that they cover exactly the subnet's pools minus the
  core's allocations. ``rebuild_free_space`` rebuilds them (``pipam ipam repair``), called under the
  fence, so no address changes meanwhile.
- ``"probe"``: the backend derives free space from what it holds (an outside IPAM). ``free_space``
  answers :class:`FreeProbe` per subnet: the address it would hand out next, without handing it out;
  verify checks that it lies in a pool and that no port holds it. ``rebuild_free_space`` is not called.
- ``"none"`` (also assumed when a driver lacks the attribute): the check does not apply; verify says
  so. Neither method is called.

Where a driver's calls go. A driver whose every call stays on ``context.session`` (no network, no
store of its own) says so with ``in_database = True``. On SQLite a server then runs a single change
on its event loop, saving the hand-over to a thread; any other driver, including one without the
attribute, is called from a thread, where a slow outside system keeps only that request waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import netaddr
from pydantic import BaseModel
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
    """``count`` addresses at once (any free ones), all or none: when fewer are free, the driver raises
    IpAddressGenerationFailure and holds none of them (the engine may then try another subnet in the
    same transaction).

    ``holders``: empty, or one port id per address (the engine's bulk port create asks for one address
    for each of many ports). A driver that records who holds an address records ``holders[i]`` for the
    i-th address it answers, and ``DriverContext.holder`` when ``holders`` is empty.
    """

    count: int
    holders: tuple[str, ...] = ()


@dataclass(frozen=True)
class AutomaticBulkRequest:
    """The EUI-64 address of each of ``macs`` (distinct), in order: a bulk port create's ports on an
    automatic subnet. All or none: when one is not free, the driver raises IpAddressAlreadyAllocated of
    the first such and holds none. ``holders``: the port of each MAC, as in ``BulkAddressRequest``.
    Asked only of a driver that declares ``automatic_bulk = True`` (module docstring)."""

    macs: tuple[str, ...]
    holders: tuple[str, ...] = ()


AddressRequest = (
    SpecificAddressRequest
    | AnyAddressRequest
    | PreferNextAddressRequest
    | AutomaticAddressRequest
    | BulkAddressRequest
    | AutomaticBulkRequest
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


# --- a backend's free space (see "Free space" above) --------------------------------------------

FreeSpaceCheck = Literal["ranges", "probe", "none"]


@dataclass(frozen=True)
class FreeRanges:
    """The free ranges a backend keeps for one subnet: inclusive integer address ranges, as stored,
    ordered by first address."""

    ranges: list[tuple[int, int]]


@dataclass(frozen=True)
class FreeProbe:
    """The address a backend would hand out next in one subnet (not handed out); None: none is free."""

    address: str | None


FreeSpace = FreeRanges | FreeProbe


@dataclass
class DriverContext:
    session: Session
    # The driver's own settings (an instance of its ``settings_model``), or None when it has none.
    settings: Any = None
    undo: Callable[[Callable[[], None]], None] | None = None
    # The port the next ``IpamSubnet.allocate`` call is for, set by the allocation engine before each
    # call (None outside a port's allocation, e.g. a migration's reconcile): an outside IPAM may record it
    # so that its operators see who holds an address.
    holder: str | None = None

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` if the surrounding transaction does not commit."""
        if self.undo is None:
            raise RuntimeError("this driver context has no transaction to undo with")
        self.undo(undo)


# --- the protocols ----------------------------------------------------------------------------


@runtime_checkable
class IpamSubnet(Protocol):
    subnet_id: str

    def allocate(self, request: AddressRequest) -> list[str]:
        """Hand out addresses; raises IpAddressAlreadyAllocated / IpAddressGenerationFailure /
        InvalidIpForSubnet."""
        ...

    def deallocate(self, address: str) -> None:
        """Take an address back; an address the backend does not hold is ignored."""
        ...

    def reconcile(self, address: str, allocated: bool) -> None:
        """Make ``address`` allocated or free, whatever it is now (the migration's catch-up)."""
        ...


def keeps_state_in_database(driver: type) -> bool:
    """Whether the driver class declares ``in_database`` (module docstring); False when it lacks it."""
    return getattr(driver, "in_database", False) is True


def answers_automatic_bulk(driver: type) -> bool:
    """Whether the driver class declares ``automatic_bulk`` (module docstring); False when it lacks it."""
    return getattr(driver, "automatic_bulk", False) is True


@runtime_checkable
class IpamDriver(Protocol):
    name: ClassVar[str]
    deprecated: ClassVar[bool]
    # A shared driver (an outside IPAM used by other systems too) may hold addresses Pipam did not
    # allocate: the migration reports them as conflicts or foreign instead of replacing them, and
    # never purges it.
    shared: ClassVar[bool]
    # Settings of its own, read from the ``[drivers.<name>]`` table (or PIPAM_DRIVERS__<NAME>__<KEY>).
    settings_model: ClassVar[type[BaseModel] | None]
    # A folder of Alembic revisions for the driver's own tables (one branch labelled with its name).
    schema: ClassVar[Path | None]
    # How verify checks this backend's free space: "ranges", "probe" or "none" (module docstring).
    free_space_check: ClassVar[FreeSpaceCheck]

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

    # free space (only for free_space_check "ranges" or "probe")
    def free_space(self, subnet_ids: Sequence[str]) -> dict[str, FreeSpace]:
        """The free space of each of these subnets that the backend holds, read in one go where it can
        (verify asks for a batch of subnets at a time). A subnet held with nothing free is answered
        (``FreeRanges([])`` or ``FreeProbe(None)``), not left out."""
        ...

    def rebuild_free_space(self, subnet_id: str, allocated: Collection[str]) -> None:
        """("ranges" only) Replace the subnet's free space with its pools minus ``allocated`` (the core's
        allocations) and minus whatever the backend itself records as allocated."""
        ...
