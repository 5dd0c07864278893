"""Property-based tests: address arithmetic, and both allocators against a simple model."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from pipam.api.errors import status_of
from pipam.errors import PipamError
from pipam.ipam import free_ranges
from pipam.ipam.addr import eui64_address, from_key, host_bounds, to_key
from pipam.ipam.free_ranges import PoolBounds, free_runs, subtract
from pipam.service.pools import default_pools
from pipam.testing import local
from pipam.testing.local import LocalClient
from tests.conftest import reset
from tests.helpers import avail, net, subnet

intervals = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1])), max_size=8)


def points(ranges: list[tuple[int, int]]) -> set[int]:
    return {v for a, b in ranges for v in range(a, b + 1)}


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
def test_keys_order_like_integers(a, b):
    assert (to_key(a) < to_key(b)) == (a < b)
    assert int(ipaddress.ip_address(from_key(to_key(a), 6))) == a


disjoint_intervals = st.lists(st.integers(0, 400), unique=True, max_size=16).map(
    lambda bounds: [(a, b) for a, b in zip(sorted(bounds)[::2], sorted(bounds)[1::2], strict=False)]
)


@given(disjoint_intervals, intervals)
def test_subtract_matches_sets(ranges, holes):
    got = subtract(ranges, holes)
    assert points(got) == points(ranges) - points(holes)
    assert all(a <= b for a, b in got)
    assert all(x[1] < y[0] for x, y in itertools.pairwise(got))


@given(st.lists(st.integers(0, 100), max_size=50), st.integers(0, 50), st.integers(0, 50))
def test_free_runs_are_pool_minus_allocated(taken, a, length):
    pool = PoolBounds("p", a, a + length)
    runs = free_runs([pool], taken)
    assert points([(x, y) for _, x, y in runs]) == set(range(a, a + length + 1)) - set(taken)


@given(st.integers(0, 2**32 - 1), st.integers(8, 32), st.booleans())
def test_default_pools_are_host_range_minus_gateway(base, prefixlen, with_gateway):
    net4 = ipaddress.ip_network(f"{ipaddress.IPv4Address(base)}/{prefixlen}", strict=False)
    gw = net4.network_address + 1 if with_gateway and net4.num_addresses > 2 else None
    pools = default_pools(net4, gw)
    first, last = host_bounds(net4)
    covered = sum(int(b) - int(a) + 1 for a, b in pools)
    assert covered == last - first + 1 - (1 if gw is not None and first <= int(gw) <= last else 0)
    assert all(gw is None or not a <= gw <= b for a, b in pools)


@given(st.binary(min_size=6, max_size=6))
def test_eui64_is_stable_and_inside_prefix(raw):
    mac_bytes = bytes([raw[0] & 0xFE]) + raw[1:]  # unicast
    mac = ":".join(f"{b:02x}" for b in mac_bytes)
    prefix = ipaddress.ip_network("2001:db8:1:2::/64")
    addr = eui64_address(prefix, mac)
    assert addr in prefix
    assert int(addr) & 0xFFFF == int.from_bytes(mac_bytes[4:], "big")


class AllocatorModel(RuleBasedStateMachine):
    """Random port and pool changes on a small subnet; the model says what must be true."""

    db = None

    @initialize()
    def setup(self):
        # Addresses are chosen at random: seeded per example so that Hypothesis can replay and shrink it.
        free_ranges._rng.seed(0)
        reset(self.db, self.db.settings.ipam_driver)
        self.network = net(self.db)["id"]
        self.cidr = ipaddress.ip_network("10.9.0.0/28")
        self.subnet = subnet(
            self.db, self.network, str(self.cidr), allocation_pools=[{"start": "10.9.0.2", "end": "10.9.0.9"}]
        )["id"]
        self.pools = [(2, 9)]
        self.held: dict[str, set[str]] = {}  # port -> addresses

    def pick(self, data) -> str:  # type: ignore[no-untyped-def]
        """A held port, by position in creation order: ids are random, so they cannot be drawn directly."""
        keys = list(self.held)
        return keys[data.draw(st.integers(0, 10_000)) % len(keys)]

    def offset(self, ip: str) -> int:
        return int(ipaddress.ip_address(ip)) - int(self.cidr.network_address)

    def in_pools(self, ip: str) -> bool:
        return any(a <= self.offset(ip) <= b for a, b in self.pools)

    def taken(self) -> set[str]:
        return {ip for ips in self.held.values() for ip in ips}

    def free_in_pools(self) -> int:
        pool_ips = {o for a, b in self.pools for o in range(a, b + 1)}
        return len(pool_ips - {self.offset(ip) for ip in self.taken()})

    @rule()
    def create_any(self):
        try:
            p = self.db.run(
                lambda u: local.create(
                    u, "port", {"network_id": self.network, "fixed_ips": [{"subnet_id": self.subnet}]}
                )
            )
        except PipamError as exc:
            assert exc.type == "IpAddressGenerationFailure"
            assert self.free_in_pools() == 0
            return
        ip = p["fixed_ips"][0]["ip_address"]
        assert ip not in self.taken() and self.in_pools(ip)
        self.held[p["id"]] = {ip}

    @rule(host=st.integers(1, 14))
    def create_specific(self, host):
        ip = str(self.cidr.network_address + host)
        try:
            p = self.db.run(
                lambda u: local.create(u, "port", {"network_id": self.network, "fixed_ips": [{"ip_address": ip}]})
            )
        except PipamError as exc:
            if ip == "10.9.0.1":
                assert status_of(exc) == 409  # the gateway
            else:
                assert exc.type == "IpAddressAlreadyAllocated" and ip in self.taken()
            return
        assert ip not in self.taken()
        self.held[p["id"]] = {ip}

    @rule(data=st.data())
    def delete(self, data):
        if not self.held:
            return
        pid = self.pick(data)
        self.db.run(lambda u: local.delete(u, "port", pid))
        del self.held[pid]

    @rule(data=st.data(), host=st.integers(2, 14))
    def move(self, data, host):
        if not self.held:
            return
        pid = self.pick(data)
        ip = str(self.cidr.network_address + host)
        try:
            p = self.db.run(lambda u: local.update(u, "port", pid, {"fixed_ips": [{"ip_address": ip}]}))
        except PipamError as exc:
            assert exc.type == "IpAddressAlreadyAllocated" and ip in self.taken() - self.held[pid]
            return
        assert [f["ip_address"] for f in p["fixed_ips"]] == [ip]
        self.held[pid] = {ip}

    @rule(start=st.integers(2, 14), length=st.integers(0, 6))
    def repool(self, start, length):
        end = min(start + length, 14)
        first, last = self.cidr.network_address + start, self.cidr.network_address + end
        self.db.run(
            lambda u: local.update(
                u, "subnet", self.subnet, {"allocation_pools": [{"start": str(first), "end": str(last)}]}
            )
        )
        self.pools = [(start, end)]

    @invariant()
    def availability_and_backend_agree(self):
        if not hasattr(self, "subnet"):
            return
        a = avail(self.db, self.network)
        assert a["used_ips"] == len(self.taken())
        assert a["total_ips"] == sum(b - a_ + 1 for a_, b in self.pools)
        result = LocalClient(self.db).verify()
        assert result.clean, [d.as_dict() for d in result.differences]


@pytest.mark.slow  # 10 to 15 s: a model run of many allocations per example
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_allocator_against_model(db, monkeypatch):
    monkeypatch.setattr(free_ranges, "_rng", random.Random(0))
    AllocatorModel.db = db
    run_state_machine_as_test(
        AllocatorModel,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
