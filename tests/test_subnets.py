"""Subnet semantics users rely on, on every backend and database."""

from __future__ import annotations

import pytest

from tests.helpers import delete_port, delete_subnet, error_of, net, port, subnet, update_port, update_subnet


def test_ipv4_defaults(db):
    s = subnet(db, net(db)["id"], "10.1.2.0/24")
    assert s["gateway_ip"] == "10.1.2.1"
    assert s["allocation_pools"] == [{"start": "10.1.2.2", "end": "10.1.2.254"}]
    assert s["ip_version"] == 4 and s["enable_dhcp"] is True


def test_cidr_is_normalised(db):
    assert subnet(db, net(db)["id"], "10.1.2.77/24")["cidr"] == "10.1.2.0/24"


def test_gateway_null_gives_whole_host_range(db):
    s = subnet(db, net(db)["id"], "10.0.0.0/29", gateway_ip=None)
    assert s["gateway_ip"] is None
    assert s["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.6"}]


def test_gateway_in_middle_splits_default_pool(db):
    s = subnet(db, net(db)["id"], "10.0.0.0/29", gateway_ip="10.0.0.3")
    assert s["allocation_pools"] == [
        {"start": "10.0.0.1", "end": "10.0.0.2"},
        {"start": "10.0.0.4", "end": "10.0.0.6"},
    ]


def test_ipv6_defaults(db):
    s = subnet(db, net(db)["id"], "2001:db8::/64")
    assert s["gateway_ip"] == "2001:db8::1"
    assert s["allocation_pools"] == [{"start": "2001:db8::2", "end": "2001:db8::ffff:ffff:ffff:ffff"}]


@pytest.mark.parametrize(
    ("body", "status", "etype"),
    [
        ({"cidr": "10.0.0.0/33"}, 400, "InvalidInput"),
        ({"cidr": "not-a-cidr"}, 400, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "ip_version": 6}, 400, "InvalidInput"),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.1.1", "end": "10.0.1.5"}]},
            400,
            "OutOfBoundsAllocationPool",
        ),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.0", "end": "10.0.0.5"}]},
            400,
            "OutOfBoundsAllocationPool",
        ),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.9", "end": "10.0.0.5"}]},
            400,
            "InvalidAllocationPool",
        ),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.1", "end": "10.0.0.5"}]},
            409,
            "GatewayConflictWithAllocationPools",
        ),
        (
            {
                "cidr": "10.0.0.0/24",
                "allocation_pools": [
                    {"start": "10.0.0.2", "end": "10.0.0.9"},
                    {"start": "10.0.0.9", "end": "10.0.0.20"},
                ],
            },
            409,
            "OverlappingAllocationPools",
        ),
        ({"cidr": "10.0.0.0/24", "gateway_ip": "10.9.0.1"}, 400, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.255"}, 400, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "ipv6_address_mode": "slaac"}, 400, "InvalidInput"),
        ({"cidr": "2001:db8::/80", "ip_version": 6, "ipv6_address_mode": "slaac"}, 400, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "bogus": 1}, 400, "HTTPBadRequest"),
        ({}, 400, "BadRequest"),
    ],
)
def test_bad_subnets_get_typed_errors(db, body, status, etype):
    network_id = net(db)["id"]
    err = error_of(lambda: subnet(db, network_id, **body))
    assert (err.status, err.type) == (status, etype), err.message


def test_unknown_network_is_404(db):
    err = error_of(lambda: subnet(db, "00000000-0000-0000-0000-000000000000", "10.0.0.0/24"))
    assert (err.status, err.type) == (404, "NetworkNotFound")


def test_overlapping_subnets_on_one_network_refused_but_fine_across_networks(db):
    a = net(db)["id"]
    subnet(db, a, "10.0.0.0/16")
    err = error_of(lambda: subnet(db, a, "10.0.5.0/24"))
    assert err.status == 400 and "overlaps" in err.message
    subnet(db, net(db)["id"], "10.0.5.0/24")


def test_delete_subnet_in_use_is_409_until_port_gone(db):
    n = net(db)["id"]
    s = subnet(db, n, "10.0.0.0/24")
    p = port(db, n)
    err = error_of(lambda: delete_subnet(db, s["id"]))
    assert (err.status, err.type) == (409, "SubnetInUse")
    delete_port(db, p["id"])
    delete_subnet(db, s["id"])


def test_pool_update_keeps_allocated_address_outside_new_pools(db):
    n = net(db)["id"]
    s = subnet(db, n, "10.0.0.0/24")
    held = port(db, n, fixed_ips=[{"ip_address": "10.0.0.50"}])
    s2 = update_subnet(db, s["id"], allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.102"}])
    assert s2["allocation_pools"] == [{"start": "10.0.0.100", "end": "10.0.0.102"}]
    assert s2["revision_number"] == 1
    got = sorted(port(db, n)["fixed_ips"][0]["ip_address"] for _ in range(3))
    assert got == ["10.0.0.100", "10.0.0.101", "10.0.0.102"]
    err = error_of(lambda: port(db, n))
    assert err.type == "IpAddressGenerationFailure"
    # The stranded address is still held, and free once its port goes.
    err = error_of(lambda: port(db, n, fixed_ips=[{"ip_address": "10.0.0.50"}]))
    assert err.type == "IpAddressAlreadyAllocated"
    delete_port(db, held["id"])
    assert port(db, n, fixed_ips=[{"ip_address": "10.0.0.50"}])["fixed_ips"][0]["ip_address"] == "10.0.0.50"


def test_pool_update_growing_pool_keeps_allocations_unique(db):
    n = net(db)["id"]
    s = subnet(db, n, "10.0.0.0/28", allocation_pools=[{"start": "10.0.0.2", "end": "10.0.0.4"}])
    first = {port(db, n)["fixed_ips"][0]["ip_address"] for _ in range(3)}
    update_subnet(db, s["id"], allocation_pools=[{"start": "10.0.0.2", "end": "10.0.0.6"}])
    more = {port(db, n)["fixed_ips"][0]["ip_address"] for _ in range(2)}
    assert first | more == {f"10.0.0.{i}" for i in range(2, 7)}
    assert error_of(lambda: port(db, n)).type == "IpAddressGenerationFailure"


def test_update_gateway_into_pool_refused(db):
    s = subnet(db, net(db)["id"], "10.0.0.0/24")
    err = error_of(lambda: update_subnet(db, s["id"], gateway_ip="10.0.0.20"))
    assert err.type == "GatewayConflictWithAllocationPools"
    err = error_of(lambda: update_subnet(db, s["id"], cidr="10.1.0.0/24"))
    assert err.status == 400


def test_slaac_subnet_added_later_gives_existing_ports_addresses(db):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/24")
    p = port(db, n, mac_address="fa:16:3e:00:00:01")
    subnet(db, n, "2001:db8:1::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    again = update_port(db, p["id"], name="x")
    assert "2001:db8:1:0:f816:3eff:fe00:1" in [f["ip_address"] for f in again["fixed_ips"]]
