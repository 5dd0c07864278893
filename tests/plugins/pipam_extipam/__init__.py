"""A third-party IPAM driver, as another package would ship it, for Pipam's tests.

Its state lives outside Pipam's database (its own SQLite file, committed at once, like a remote IPAM
server), and other systems may hold addresses in it too. So it registers an undo for every write, and
declares itself ``shared``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import sqlite3
import tempfile
from collections.abc import Sequence
from typing import ClassVar

import netaddr

from pipam.errors import (
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    IpamSubnetNotFound,
)
from pipam.ipam.addr import eui64_address, host_bounds
from pipam.ipam.interface import (
    AnyAddressRequest,
    AutomaticAddressRequest,
    BulkAddressRequest,
    DriverContext,
    FreeProbe,
    FreeSpace,
    PreferNextAddressRequest,
    SpecificAddressRequest,
    SpecificSubnetRequest,
    SubnetState,
)


def store() -> sqlite3.Connection:
    path = os.environ.get("PIPAM_EXTIPAM_DB") or os.path.join(tempfile.gettempdir(), "pipam-extipam.db")
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS subnets (subnet_id TEXT PRIMARY KEY, cidr TEXT, pools TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS allocs (subnet_id TEXT, ip TEXT, owner TEXT, PRIMARY KEY (subnet_id, ip))")
    return conn


class ExternalSubnet:
    def __init__(self, driver: ExternalIpam, subnet_id: str, cidr: str, pools: list[list[str]]) -> None:
        self.driver = driver
        self.subnet_id = subnet_id
        self.network = ipaddress.ip_network(cidr)
        self.pools = [(int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))) for a, b in pools]

    def _take(self, ip: str) -> bool:
        cur = self.driver.db.execute("INSERT OR IGNORE INTO allocs VALUES (?, ?, 'pipam')", (self.subnet_id, ip))
        if cur.rowcount != 1:
            return False
        self.driver.context.on_rollback(
            lambda: self.driver.db.execute("DELETE FROM allocs WHERE subnet_id=? AND ip=?", (self.subnet_id, ip))
        )
        return True

    def next_free(self) -> str | None:
        """The lowest pool address nobody holds, found by walking the held addresses (never the pool)."""
        held = sorted(
            int(ipaddress.ip_address(r[0]))
            for r in self.driver.db.execute("SELECT ip FROM allocs WHERE subnet_id=?", (self.subnet_id,))
        )
        for a, b in sorted(self.pools):
            value = a
            for h in held:
                if h == value:
                    value += 1
                elif h > value:
                    break
            if value <= b:
                return str(ipaddress.ip_address(value) if self.network.version == 6 else ipaddress.IPv4Address(value))
        return None

    def _lowest(self) -> str:
        held = {r[0] for r in self.driver.db.execute("SELECT ip FROM allocs WHERE subnet_id=?", (self.subnet_id,))}
        for a, b in self.pools:
            for value in range(a, b + 1):
                ip = str(ipaddress.ip_address(value) if self.network.version == 6 else ipaddress.IPv4Address(value))
                if ip not in held and self._take(ip):
                    return ip
        raise IpAddressGenerationFailure(self.subnet_id)

    def _any(self) -> str:
        size = sum(b - a + 1 for a, b in self.pools)
        for _ in range(200):  # random probing: fine for a test double
            if not size:
                break
            offset = random.randrange(size)
            for a, b in self.pools:
                if offset <= b - a:
                    ip = str(
                        ipaddress.ip_address(a + offset)
                        if self.network.version == 6
                        else ipaddress.IPv4Address(a + offset)
                    )
                    if self._take(ip):
                        return ip
                    break
                offset -= b - a + 1
        raise IpAddressGenerationFailure(self.subnet_id)

    def _many(self, count: int) -> list[str]:
        """All or none: a failed bulk gives back what it took (the engine may try another subnet)."""
        got: list[str] = []
        try:
            for _ in range(count):
                got.append(self._any())
        except IpAddressGenerationFailure:
            for ip in got:
                self.deallocate(ip)
            raise
        return got

    def allocate(self, request) -> list[str]:  # type: ignore[no-untyped-def]
        if isinstance(request, SpecificAddressRequest | AutomaticAddressRequest):
            addr = (
                request.address
                if isinstance(request, SpecificAddressRequest)
                else eui64_address(self.network, request.mac)
            )
            ip = str(addr)
            lo, hi = host_bounds(self.network)
            if not lo <= int(addr) <= hi:
                raise InvalidIpForSubnet(ip)
            if not self._take(ip):
                raise IpAddressAlreadyAllocated(ip, self.subnet_id)
            return [ip]
        if isinstance(request, PreferNextAddressRequest):
            return [self._lowest()]
        if isinstance(request, AnyAddressRequest):
            return [self._any()]
        if isinstance(request, BulkAddressRequest):
            return self._many(request.count)
        raise TypeError(request)

    def reconcile(self, address: str, allocated: bool) -> None:
        if allocated:
            self._take(address)
        else:
            self.deallocate(address)

    def deallocate(self, address: str) -> None:
        cur = self.driver.db.execute(
            "DELETE FROM allocs WHERE subnet_id=? AND ip=? AND owner='pipam'", (self.subnet_id, address)
        )
        if cur.rowcount == 1:
            self.driver.context.on_rollback(
                lambda: self.driver.db.execute(
                    "INSERT OR IGNORE INTO allocs VALUES (?, ?, 'pipam')", (self.subnet_id, address)
                )
            )


class ExternalIpam:
    name: ClassVar[str] = "extipam"
    deprecated: ClassVar[bool] = False
    shared: ClassVar[bool] = True
    settings_model: ClassVar[None] = None
    schema: ClassVar[None] = None
    # It keeps no free space of its own (free is whatever nobody holds): verify probes it instead.
    free_space_check: ClassVar[str] = "probe"

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        self.db = store()

    def _put_subnet(self, subnet_id: str, cidr: str, pools: list[list[str]]) -> None:
        old = self.db.execute("SELECT cidr, pools FROM subnets WHERE subnet_id=?", (subnet_id,)).fetchone()
        self.db.execute("INSERT OR REPLACE INTO subnets VALUES (?, ?, ?)", (subnet_id, cidr, json.dumps(pools)))

        def undo() -> None:
            if old is None:
                self.db.execute("DELETE FROM subnets WHERE subnet_id=?", (subnet_id,))
            else:
                self.db.execute("INSERT OR REPLACE INTO subnets VALUES (?, ?, ?)", (subnet_id, *old))

        self.context.on_rollback(undo)

    def allocate_subnet(self, request: SpecificSubnetRequest) -> ExternalSubnet:
        pools = [[str(a), str(b)] for a, b in request.allocation_pools]
        self._put_subnet(request.subnet_id, str(request.cidr), pools)
        return ExternalSubnet(self, request.subnet_id, str(request.cidr), pools)

    def get_subnet(self, subnet_id: str) -> ExternalSubnet:
        row = self.db.execute("SELECT cidr, pools FROM subnets WHERE subnet_id=?", (subnet_id,)).fetchone()
        if row is None:
            raise IpamSubnetNotFound(subnet_id, self.name)
        return ExternalSubnet(self, subnet_id, row[0], json.loads(row[1]))

    def update_subnet(self, request: SpecificSubnetRequest) -> ExternalSubnet:
        return self.allocate_subnet(request)

    def remove_subnet(self, subnet_id: str) -> None:
        self.db.execute("DELETE FROM subnets WHERE subnet_id=?", (subnet_id,))
        self.db.execute("DELETE FROM allocs WHERE subnet_id=? AND owner='pipam'", (subnet_id,))

    def subnet_ids(self, after: str | None, limit: int) -> list[str]:
        rows = self.db.execute(
            "SELECT subnet_id FROM subnets WHERE subnet_id > ? ORDER BY subnet_id LIMIT ?", (after or "", limit)
        )
        return [r[0] for r in rows]

    def dump_subnet(self, subnet_id: str) -> SubnetState | None:
        row = self.db.execute("SELECT cidr, pools FROM subnets WHERE subnet_id=?", (subnet_id,)).fetchone()
        if row is None:
            return None
        ips = [r[0] for r in self.db.execute("SELECT ip FROM allocs WHERE subnet_id=?", (subnet_id,))]
        return SubnetState(subnet_id, row[0], [tuple(p) for p in json.loads(row[1])], netaddr.IPSet(ips))

    def import_subnet(self, state: SubnetState, core_allocations: list[str]) -> None:
        self._put_subnet(state.subnet_id, state.cidr, [list(p) for p in state.pools])
        wanted = set(core_allocations)
        mine = {
            r[0]
            for r in self.db.execute("SELECT ip FROM allocs WHERE subnet_id=? AND owner='pipam'", (state.subnet_id,))
        }
        handle = ExternalSubnet(self, state.subnet_id, state.cidr, [list(p) for p in state.pools])
        for ip in mine - wanted:  # what Pipam held here before and no longer does (others' stay)
            handle.deallocate(ip)
        for ip in wanted - mine:
            handle._take(ip)

    def counts(self) -> dict[str, int]:
        return {
            "subnets": self.db.execute("SELECT count(*) FROM subnets").fetchone()[0],
            "allocations": self.db.execute("SELECT count(*) FROM allocs WHERE owner='pipam'").fetchone()[0],
        }

    def free_space(self, subnet_ids: Sequence[str]) -> dict[str, FreeSpace]:
        found: dict[str, FreeSpace] = {}
        for sid in subnet_ids:
            try:
                found[sid] = FreeProbe(self.get_subnet(sid).next_free())
            except IpamSubnetNotFound:
                continue
        return found

    def purge(self) -> dict[str, int]:
        raise RuntimeError("a shared IPAM is never purged by Pipam")
