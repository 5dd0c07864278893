"""The driver contract: what every IPAM driver must do, as tests any driver can run against itself.

A driver's test module subclasses :class:`DriverContract` and names its backend::

    from pipam.testing.contract import DriverContract

    class TestMyDriver(DriverContract):
        backend = "mydriver"

The tests run on a SQLite file by default; override the ``contract_url`` fixture for another database,
and set up whatever outside system the driver needs in an autouse fixture of the subclass. Every
test drives the driver the way Pipam does (the allocation engine and the service, which keep the
ordering rules of ``pipam.ipam.interface``) and then asks the driver what it holds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import netaddr
import pytest

from pipam.config import load_settings
from pipam.db.models import Subnet
from pipam.errors import (
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    PipamError,
)
from pipam.ipam.addr import eui64_address
from pipam.ipam.interface import (
    AddressRequest,
    AnyAddressRequest,
    AutomaticAddressRequest,
    BulkAddressRequest,
    FreeProbe,
    FreeRanges,
    IpamDriver,
    PreferNextAddressRequest,
    SpecificAddressRequest,
    SubnetState,
    answers_automatic_bulk,
)
from pipam.migration.free_space import check_of
from pipam.service.allocation import Held, Wanted
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database, UnitOfWork
from pipam.testing.databases import reset
from pipam.testing.local import LocalClient, active_driver

T = TypeVar("T")


class Failed(Exception):
    """Raised inside a transaction to make it roll back."""


class Harness:
    """One network, subnets on it and a port to hold addresses, through Pipam's own code paths."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.client = LocalClient(db)
        self.network_id = self.client.create("network", name="contract")["id"]
        self.port_id = self.client.create("port", network_id=self.network_id, fixed_ips=[])["id"]

    def subnet(self, cidr: str, pools: list[tuple[str, str]] | None = None, **body: Any) -> str:
        if pools is not None:
            body["allocation_pools"] = [{"start": a, "end": b} for a, b in pools]
        version = ipaddress.ip_network(cidr).version
        return self.client.create("subnet", network_id=self.network_id, cidr=cidr, ip_version=version, **body)["id"]

    def allocate(self, subnet_id: str, request: AddressRequest) -> list[str]:
        def run(u: UnitOfWork) -> list[str]:
            subnet = u.session.get(Subnet, subnet_id)
            return [
                h.ip_address for h in u.addresses.allocate(self.port_id, self.network_id, [Wanted(subnet, request)])
            ]

        return self.db.run(run)

    def release(self, subnet_id: str, address: str) -> None:
        self.db.run(lambda u: u.addresses.release([Held(subnet_id, address, self.port_id)]))

    def driver(self, fn: Callable[[IpamDriver], T]) -> T:
        return self.db.run(lambda u: fn(active_driver(u)))

    def held(self, subnet_id: str) -> netaddr.IPSet:
        state = self.driver(lambda d: d.dump_subnet(subnet_id))
        assert state is not None, f"the driver holds nothing for subnet {subnet_id}"
        return state.allocations

    def free_space(self, subnet_id: str) -> netaddr.IPSet | str | None:
        """What the driver says is free: a "ranges" driver's ranges as a set, a "probe" driver's address."""
        answer = self.driver(lambda d: d.free_space([subnet_id]))[subnet_id]
        if isinstance(answer, FreeRanges):
            version = ipaddress.ip_network(self.client.show("subnet", subnet_id)["cidr"]).version
            return netaddr.IPSet(
                netaddr.IPRange(netaddr.IPAddress(a, version), netaddr.IPAddress(b, version)) for a, b in answer.ranges
            )
        assert isinstance(answer, FreeProbe), answer
        return answer.address

    def ports(self, n: int) -> list[str]:
        """``n`` more ports on the network, holding nothing."""
        return [self.client.create("port", network_id=self.network_id, fixed_ips=[])["id"] for _ in range(n)]

    def allocate_each(self, subnet_id: str, port_ids: list[str]) -> list[Held]:
        """One any-address for each port in one batch, as a bulk port create asks for them."""

        def run(u: UnitOfWork) -> list[Held]:
            return u.addresses.allocate_each(port_ids, self.network_id, u.session.get(Subnet, subnet_id))

        return self.db.run(run)

    def automatic_each(self, subnet_id: str, ports: list[tuple[str, str]]) -> list[Held]:
        """The EUI-64 address of each (port, MAC) in one batch, as a bulk port create asks for them."""

        def run(u: UnitOfWork) -> list[Held]:
            return u.addresses.allocate_automatic_each(ports, self.network_id, u.session.get(Subnet, subnet_id))

        return self.db.run(run)

    def fill(self, subnet_id: str) -> list[str]:
        got: list[str] = []
        while True:
            try:
                got += self.allocate(subnet_id, AnyAddressRequest())
            except IpAddressGenerationFailure:
                return got


class DriverContract:
    backend: ClassVar[str]

    @pytest.fixture
    def contract_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/contract.db"

    @pytest.fixture
    def ipam(self, contract_url: str) -> Iterator[Harness]:
        db = Database(load_settings(database_url=contract_url, ipam_driver=self.backend))
        upgrade_database(db.engine, self.backend)
        reset(db.engine, self.backend)
        yield Harness(db)
        db.dispose()

    # --- allocation kinds ----------------------------------------------------------------------

    def test_any_address_is_in_a_pool_and_held(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.20.0.0/24", [("10.20.0.10", "10.20.0.19"), ("10.20.0.100", "10.20.0.109")])
        got = [ipam.allocate(sid, AnyAddressRequest())[0] for _ in range(8)]
        pools = netaddr.IPSet(netaddr.IPRange("10.20.0.10", "10.20.0.19")) | netaddr.IPSet(
            netaddr.IPRange("10.20.0.100", "10.20.0.109")
        )
        assert len(set(got)) == 8 and all(ip in pools for ip in got)
        assert ipam.held(sid) == netaddr.IPSet(got)

    def test_specific_address_once_only(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.21.0.0/24")
        address = ipaddress.ip_address("10.21.0.77")
        assert ipam.allocate(sid, SpecificAddressRequest(address)) == ["10.21.0.77"]
        with pytest.raises(IpAddressAlreadyAllocated):
            ipam.allocate(sid, SpecificAddressRequest(address))
        # Inside the subnet but outside every pool: allowed when asked for by name, as in Neutron.
        sid2 = ipam.subnet("10.22.0.0/24", [("10.22.0.100", "10.22.0.110")])
        assert ipam.allocate(sid2, SpecificAddressRequest(ipaddress.ip_address("10.22.0.5"))) == ["10.22.0.5"]
        assert "10.22.0.5" in ipam.held(sid2)

    def test_an_address_outside_the_subnet_is_refused(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.23.0.0/24")
        for outside in ("10.23.0.0", "10.23.0.255"):  # network and broadcast addresses
            with pytest.raises(InvalidIpForSubnet):
                ipam.allocate(sid, SpecificAddressRequest(ipaddress.ip_address(outside)))

    def test_prefer_next_takes_the_lowest_free_address(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.24.0.0/24", [("10.24.0.50", "10.24.0.60")])
        assert ipam.allocate(sid, PreferNextAddressRequest()) == ["10.24.0.50"]
        assert ipam.allocate(sid, PreferNextAddressRequest()) == ["10.24.0.51"]

    def test_automatic_address_is_the_eui64_of_the_mac(self, ipam: Harness) -> None:
        sid = ipam.subnet("2001:db8:c0::/64", ipv6_address_mode="dhcpv6-stateless", ipv6_ra_mode="dhcpv6-stateless")
        mac = "fa:16:3e:12:34:56"
        expected = str(eui64_address(ipaddress.ip_network("2001:db8:c0::/64"), mac))
        assert ipam.allocate(sid, AutomaticAddressRequest(mac)) == [expected]
        with pytest.raises(IpAddressAlreadyAllocated):
            ipam.allocate(sid, AutomaticAddressRequest(mac))

    def test_bulk_request_gives_distinct_addresses(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.25.0.0/28")
        got = ipam.allocate(sid, BulkAddressRequest(5))
        assert len(got) == 5 and len(set(got)) == 5
        assert ipam.held(sid) == netaddr.IPSet(got)

    def test_bulk_for_many_ports_gives_each_its_own_address(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.34.0.0/24", [("10.34.0.10", "10.34.0.29")])
        ports = ipam.ports(12)
        held = ipam.allocate_each(sid, ports)
        assert [h.port_id for h in held] == ports
        got = [h.ip_address for h in held]
        assert len(set(got)) == 12 and netaddr.IPSet(got) <= netaddr.IPSet(netaddr.IPRange("10.34.0.10", "10.34.0.29"))
        assert ipam.held(sid) == netaddr.IPSet(got)
        # The core rows say which port holds which address, as the API shows it.
        for h in held:
            assert ipam.client.show("port", h.port_id)["fixed_ips"] == [{"subnet_id": sid, "ip_address": h.ip_address}]

    def test_bulk_is_all_or_none_when_fewer_are_free(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.35.0.0/28", [("10.35.0.2", "10.35.0.9")])  # 8 addresses
        taken = ipam.allocate(sid, BulkAddressRequest(3))
        ports = ipam.ports(6)

        def bulk_then_singles(u: UnitOfWork) -> list[str]:
            # A bulk port create falls back to single allocations in the same transaction: the failed
            # bulk must have left every free address to them.
            subnet = u.session.get(Subnet, sid)
            with pytest.raises(IpAddressGenerationFailure):
                u.addresses.allocate_each(ports, ipam.network_id, subnet)
            with pytest.raises(IpAddressGenerationFailure):
                u.addresses.allocate(ipam.port_id, ipam.network_id, [Wanted(subnet, BulkAddressRequest(6))])
            got: list[str] = []
            for port_id in ports[:5]:
                got += [
                    h.ip_address
                    for h in u.addresses.allocate(port_id, ipam.network_id, [Wanted(subnet, AnyAddressRequest())])
                ]
            return got

        singles = ipam.db.run(bulk_then_singles)
        free = netaddr.IPSet(netaddr.IPRange("10.35.0.2", "10.35.0.9")) - netaddr.IPSet(taken)
        assert netaddr.IPSet(singles) == free and len(singles) == 5
        assert ipam.held(sid) == netaddr.IPSet(taken + singles)
        with pytest.raises(IpAddressGenerationFailure):
            ipam.allocate(sid, AnyAddressRequest())

    def test_bulk_takes_every_free_address_of_a_fragmented_pool(self, ipam: Harness) -> None:
        pools = [("10.36.0.10", "10.36.0.19"), ("10.36.0.40", "10.36.0.44")]
        sid = ipam.subnet("10.36.0.0/24", pools)
        every = netaddr.IPSet(netaddr.IPRange(a, b) for a, b in pools)
        for host in (11, 12, 15, 18, 41, 43):  # free space left in many small runs across both pools
            ipam.allocate(sid, SpecificAddressRequest(ipaddress.ip_address(f"10.36.0.{host}")))
        free = every - ipam.held(sid)
        held = ipam.allocate_each(sid, ipam.ports(free.size))
        assert netaddr.IPSet(h.ip_address for h in held) == free and len(held) == free.size
        assert ipam.held(sid) == every
        with pytest.raises(IpAddressGenerationFailure):
            ipam.allocate(sid, AnyAddressRequest())

    def test_automatic_bulk_gives_each_mac_its_eui64_all_or_none(self, ipam: Harness) -> None:
        if not ipam.driver(lambda d: answers_automatic_bulk(type(d))):
            pytest.skip("the driver takes EUI-64 addresses one at a time (it does not declare automatic_bulk)")
        network = ipaddress.ip_network("2001:db8:c1::/64")
        # The pool ends below the EUI-64 addresses of MACs from fa:16:3e:01:00:00 on.
        sid = ipam.subnet(
            str(network),
            [("2001:db8:c1::2", "2001:db8:c1:0:f816:3eff:fe00:ffff")],
            ipv6_address_mode="slaac",
            ipv6_ra_mode="slaac",
        )

        def eui64(mac: str) -> str:
            return str(eui64_address(network, mac))

        before = ipam.held(sid)  # the EUI-64 address of the harness's own port, given when the subnet came
        macs = ["fa:16:3e:00:00:01", "fa:16:3e:ff:00:02", "fa:16:3e:00:00:03"]  # the second outside the pool
        ports = ipam.ports(3)
        held = ipam.automatic_each(sid, list(zip(ports, macs, strict=True)))
        assert [(h.port_id, h.ip_address) for h in held] == [(p, eui64(m)) for p, m in zip(ports, macs, strict=True)]
        assert ipam.held(sid) == before | netaddr.IPSet(eui64(m) for m in macs)
        fresh = "fa:16:3e:00:00:04"
        for taken in (macs[2], macs[1], fresh):  # held in the pool, held outside it, repeated in the batch

            def bulk_then_single(u: UnitOfWork, taken: str = taken) -> list[str]:
                subnet = u.session.get(Subnet, sid)
                asked = [(ports[0], fresh), (ports[1], taken), (ports[2], "fa:16:3e:00:00:05")]
                if taken == fresh:
                    asked[1] = (ports[1], fresh)
                with pytest.raises(IpAddressAlreadyAllocated) as refused:
                    u.addresses.allocate_automatic_each(asked, ipam.network_id, subnet)
                assert eui64(taken) in refused.value.message
                # All or none: the batch's free addresses are still free in the same transaction.
                wanted = [Wanted(subnet, AutomaticAddressRequest(m)) for m in (fresh, "fa:16:3e:00:00:05")]
                return [h.ip_address for h in u.addresses.allocate(ipam.port_id, ipam.network_id, wanted)]

            assert sorted(ipam.db.run(bulk_then_single)) == sorted([eui64(fresh), eui64("fa:16:3e:00:00:05")])
            ipam.release(sid, eui64(fresh))
            ipam.release(sid, eui64("fa:16:3e:00:00:05"))
        assert ipam.held(sid) == before | netaddr.IPSet(eui64(m) for m in macs)

    # --- exhaustion, release, reuse ------------------------------------------------------------

    def test_exhaustion_then_release_and_reuse(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.26.0.0/29")  # pool 10.26.0.2 - 10.26.0.6
        got = ipam.fill(sid)
        assert sorted(got) == [f"10.26.0.{i}" for i in range(2, 7)]
        ipam.release(sid, "10.26.0.4")
        assert "10.26.0.4" not in ipam.held(sid)
        assert ipam.allocate(sid, AnyAddressRequest()) == ["10.26.0.4"]
        with pytest.raises(IpAddressGenerationFailure):
            ipam.allocate(sid, AnyAddressRequest())

    def test_ipv6_pools_are_not_enumerated(self, ipam: Harness) -> None:
        sid = ipam.subnet("2001:db8:c1::/48", ipv6_address_mode="dhcpv6-stateful", ipv6_ra_mode="dhcpv6-stateful")
        got = [ipam.allocate(sid, AnyAddressRequest())[0] for _ in range(20)]
        assert len(set(got)) == 20

    # --- pools ---------------------------------------------------------------------------------

    def test_pools_update_keeps_what_is_allocated(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.27.0.0/24", [("10.27.0.10", "10.27.0.12")])
        got = ipam.fill(sid)
        ipam.client.update("subnet", sid, allocation_pools=[{"start": "10.27.0.20", "end": "10.27.0.21"}])
        assert ipam.held(sid) == netaddr.IPSet(got)  # stranded outside every pool, still allocated
        assert sorted(ipam.fill(sid)) == ["10.27.0.20", "10.27.0.21"]
        state = ipam.driver(lambda d: d.dump_subnet(sid))
        assert state is not None and sorted(state.pools) == [("10.27.0.20", "10.27.0.21")]

    # --- listing what it holds, import, reconcile ------------------------------------------------

    def test_lists_what_it_holds(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.28.0.0/24")
        got = ipam.allocate(sid, BulkAddressRequest(3))
        state = ipam.driver(lambda d: d.dump_subnet(sid))
        assert state is not None and state.subnet_id == sid and state.cidr == "10.28.0.0/24"
        assert state.allocations == netaddr.IPSet(got)
        assert sid in ipam.driver(lambda d: d.subnet_ids(None, 100))
        assert ipam.driver(lambda d: d.dump_subnet("00000000-0000-0000-0000-000000000000")) is None

    def test_import_replaces_and_reconcile_is_idempotent(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.29.0.0/28")
        ipam.allocate(sid, SpecificAddressRequest(ipaddress.ip_address("10.29.0.3")))
        for allocated in (True, True, False, False, True):
            ipam.driver(lambda d, a=allocated: d.get_subnet(sid).reconcile("10.29.0.9", a))
            assert ("10.29.0.9" in ipam.held(sid)) is allocated
        # The core holds 10.29.0.3 only: importing that replaces whatever the backend held.
        truth = SubnetState(sid, "10.29.0.0/28", [("10.29.0.2", "10.29.0.14")], netaddr.IPSet(["10.29.0.3"]))
        ipam.driver(lambda d: d.import_subnet(truth, ["10.29.0.3"]))
        assert ipam.held(sid) == netaddr.IPSet(["10.29.0.3"])
        # The free space agrees: every other pool address is handed out once, then none.
        assert set(ipam.fill(sid)) == {f"10.29.0.{i}" for i in range(2, 15)} - {"10.29.0.3"}

    # --- transactions --------------------------------------------------------------------------

    def test_a_failed_transaction_leaves_nothing_behind(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.30.0.0/29")

        def allocate_then_fail(u: UnitOfWork) -> None:
            subnet = u.session.get(Subnet, sid)
            u.addresses.allocate(ipam.port_id, ipam.network_id, [Wanted(subnet, BulkAddressRequest(3))])
            raise Failed

        with pytest.raises(Failed):
            ipam.db.run(allocate_then_fail)
        assert ipam.held(sid).size == 0
        assert len(ipam.fill(sid)) == 5  # every address still free

    def test_removed_subnet_is_forgotten(self, ipam: Harness) -> None:
        sid = ipam.subnet("10.31.0.0/29")
        ipam.client.delete("subnet", sid)
        assert ipam.driver(lambda d: d.dump_subnet(sid)) is None
        with pytest.raises(PipamError):
            ipam.driver(lambda d: d.get_subnet(sid))

    # --- free space (``free_space_check`` in pipam.ipam.interface) ---------------------------------

    def check(self, ipam: Harness) -> str:
        check = ipam.driver(check_of)
        if check == "none":
            pytest.skip(f"{self.backend} declares no free-space check")
        return check

    def test_free_space_is_pools_minus_allocations(self, ipam: Harness) -> None:
        check = self.check(ipam)
        sid = ipam.subnet("10.32.0.0/24", [("10.32.0.10", "10.32.0.19"), ("10.32.0.100", "10.32.0.109")])
        got = ipam.allocate(sid, BulkAddressRequest(6))
        ipam.release(sid, got[0])
        ipam.allocate(sid, SpecificAddressRequest(ipaddress.ip_address("10.32.0.5")))  # outside every pool
        v6 = ipam.subnet("2001:db8:c2::/64", ipv6_address_mode="dhcpv6-stateful", ipv6_ra_mode="dhcpv6-stateful")
        ipam.allocate(v6, AnyAddressRequest())
        pools = netaddr.IPSet(netaddr.IPRange("10.32.0.10", "10.32.0.19")) | netaddr.IPSet(
            netaddr.IPRange("10.32.0.100", "10.32.0.109")
        )
        expected = pools - netaddr.IPSet(got[1:])
        answer = ipam.free_space(sid)
        if check == "ranges":
            assert answer == expected
        else:
            assert answer in expected
        # verify runs the same check over every subnet, a /64 included, and finds it clean.
        result = ipam.client.verify()
        assert result.clean, [d.as_dict() for d in result.differences]
        assert result.free_space["check"] == check and result.free_space["subnets_checked"] == 2
        ipam.fill(sid)
        assert ipam.free_space(sid) in (netaddr.IPSet(), None)

    def test_rebuild_free_space_keeps_what_is_held(self, ipam: Harness) -> None:
        if self.check(ipam) != "ranges":
            pytest.skip(f"{self.backend} keeps no free ranges to rebuild")
        sid = ipam.subnet("10.33.0.0/28")  # pool 10.33.0.2 - 10.33.0.14
        ipam.allocate(sid, SpecificAddressRequest(ipaddress.ip_address("10.33.0.3")))
        pool = netaddr.IPSet(netaddr.IPRange("10.33.0.2", "10.33.0.14"))
        ipam.driver(lambda d: d.rebuild_free_space(sid, ["10.33.0.9"]))
        assert ipam.free_space(sid) == pool - netaddr.IPSet(["10.33.0.3", "10.33.0.9"])
        # Rebuilt from nothing: what the backend holds stays out of the free space all the same.
        ipam.driver(lambda d: d.rebuild_free_space(sid, []))
        assert ipam.free_space(sid) == pool - netaddr.IPSet(["10.33.0.3"])
        assert sorted(ipam.fill(sid), key=netaddr.IPAddress) == [str(a) for a in pool if str(a) != "10.33.0.3"]
