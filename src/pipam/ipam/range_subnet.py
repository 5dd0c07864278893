"""An IpamSubnet over a RangeStore: the allocation logic both shipped backends share.

The backends differ in where they keep pools and which table records an allocation (the *ledger*);
the way an address is chosen and claimed is the same and lives here once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from pipam.errors import (
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    IpamUnsupportedRequest,
)
from pipam.ipam.addr import IPNetwork, eui64_address, host_bounds
from pipam.ipam.free_ranges import PoolBounds, RangeStore
from pipam.ipam.interface import (
    AddressRequest,
    AnyAddressRequest,
    AutomaticAddressRequest,
    AutomaticBulkRequest,
    BulkAddressRequest,
    PreferNextAddressRequest,
    SpecificAddressRequest,
)


class Ledger(Protocol):
    """Where a backend records which addresses of a subnet are allocated."""

    def holds(self, session: Session, address: str) -> bool: ...

    def record(self, session: Session, addresses: list[str]) -> None: ...

    def forget(self, session: Session, address: str) -> bool: ...


class RangeSubnet:
    def __init__(
        self,
        session: Session,
        *,
        subnet_id: str,
        owner_id: str,
        network: IPNetwork,
        pools: Sequence[PoolBounds],
        ranges: RangeStore,
        ledger: Ledger,
    ) -> None:
        self.session = session
        self.subnet_id = subnet_id
        self.owner_id = owner_id
        self.network = network
        self.pools = list(pools)
        self.ranges = ranges
        self.ledger = ledger

    def _ip(self, value: int) -> str:
        return str(ipaddress.ip_address(value) if self.network.version == 6 else ipaddress.IPv4Address(value))

    def _pool_of(self, value: int) -> PoolBounds | None:
        return next((p for p in self.pools if value in p), None)

    def allocate(self, request: AddressRequest) -> list[str]:
        if isinstance(request, SpecificAddressRequest):
            return [self._allocate_specific(int(request.address))]
        if isinstance(request, AutomaticAddressRequest):
            return [self._allocate_specific(int(eui64_address(self.network, request.mac)))]
        if isinstance(request, AnyAddressRequest | PreferNextAddressRequest):
            return self._allocate_many(1, lowest=isinstance(request, PreferNextAddressRequest))
        if isinstance(request, BulkAddressRequest):
            return self._allocate_many(request.count)
        if isinstance(request, AutomaticBulkRequest):
            return self._allocate_values([int(eui64_address(self.network, mac)) for mac in request.macs])
        raise IpamUnsupportedRequest(f"unsupported address request {request!r}")

    def _allocate_many(self, count: int, lowest: bool = False) -> list[str]:
        """``count`` addresses claimed in runs (a few statements, not one claim each), all or none."""
        if count <= 0:
            return []
        if not self.pools:
            raise IpAddressGenerationFailure(self.subnet_id)
        lo = min(p.first for p in self.pools)
        hi = max(p.last for p in self.pools)
        values = self.ranges.take_many(self.session, self.owner_id, lo, hi, count, lowest=lowest)
        if len(values) < count:  # take_many gave back what it took: nothing stays claimed
            raise IpAddressGenerationFailure(self.subnet_id)
        ips = [self._ip(v) for v in values]
        self.ledger.record(self.session, ips)
        return ips

    def _allocate_specific(self, value: int) -> str:
        ip = self._ip(value)
        first, last = host_bounds(self.network)
        if not first <= value <= last:
            raise InvalidIpForSubnet(ip)
        if self._pool_of(value) is not None:
            if not self.ranges.take_specific(self.session, self.owner_id, value):
                raise IpAddressAlreadyAllocated(ip, self.subnet_id)
        elif self.ledger.holds(self.session, ip):
            raise IpAddressAlreadyAllocated(ip, self.subnet_id)
        self.ledger.record(self.session, [ip])
        return ip

    def _allocate_values(self, values: list[int]) -> list[str]:
        """Each of ``values``, all or none: IpAddressAlreadyAllocated of the first one held (or repeated)."""
        first, last = host_bounds(self.network)
        ips = [self._ip(v) for v in values]
        outside = next((ip for v, ip in zip(values, ips, strict=True) if not first <= v <= last), None)
        if outside is not None:
            raise InvalidIpForSubnet(outside)
        in_pool = {v for v in values if self._pool_of(v) is not None}
        found = self.ranges.find_values(self.session, self.owner_id, [v for v in values if v in in_pool])
        seen: set[int] = set()
        for v, ip in zip(values, ips, strict=True):
            if v in seen or (v in found.missing if v in in_pool else self.ledger.holds(self.session, ip)):
                raise IpAddressAlreadyAllocated(ip, self.subnet_id)
            seen.add(v)
        self.ranges.claim_values(self.session, self.owner_id, found)
        self.ledger.record(self.session, ips)
        return ips

    def deallocate(self, address: str) -> None:
        value = int(ipaddress.ip_address(address))
        if not self.ledger.forget(self.session, address):
            return  # not held: releasing twice is harmless
        pool = self._pool_of(value)
        if pool is not None:
            self.ranges.give_back(self.session, self.owner_id, pool.pool_id, value)

    def reconcile(self, address: str, allocated: bool) -> None:
        value = int(ipaddress.ip_address(address))
        pool = self._pool_of(value)
        free = pool is not None and self.ranges.is_free(self.session, self.owner_id, value)
        if allocated:
            if free:
                self.ranges.take_specific(self.session, self.owner_id, value)
            if not self.ledger.holds(self.session, address):
                self.ledger.record(self.session, [address])
            return
        self.ledger.forget(self.session, address)
        if pool is not None and not free:
            self.ranges.give_back(self.session, self.owner_id, pool.pool_id, value)
