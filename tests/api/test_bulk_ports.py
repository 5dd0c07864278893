"""Bulk port creates over HTTP: the addresses of ports without fixed_ips are claimed in batches, and a
user sees what creating the ports one after the other gives (overflow to the next subnet, errors,
all or nothing)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import verify_clean
from tests.api.wire import err, eui64, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def bulk(api, bodies: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    return api.post("/v2.0/ports", json={"ports": bodies})


def two_small_subnets(api) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """A network with two /28 subnets (13 pool addresses each), in the order ports take from them."""
    net = mk(api, "network", name="n")["id"]
    made = [mk(api, "subnet", network_id=net, ip_version=4, cidr=cidr)["id"] for cidr in ("10.5.0.0/28", "10.6.0.0/28")]
    # Subnets created in the same instant tie on created_at: a probe port shows which one comes first.
    probe = mk(api, "port", network_id=net)
    ok(api.delete(f"/v2.0/ports/{probe['id']}"), 204)
    first = probe["fixed_ips"][0]["subnet_id"]
    return net, first, next(s for s in made if s != first)


def leave_free(api, net: str, subnet: str, free: int) -> None:  # type: ignore[no-untyped-def]
    """Ports that take addresses of ``subnet`` by name, until ``free`` of its 13 are left."""
    ok(bulk(api, [{"network_id": net, "fixed_ips": [{"subnet_id": subnet}]}] * (13 - free)), 201)


def all_ports(api) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return ok(api.get("/v2.0/ports"))["ports"]


def test_bulk_create_fills_the_first_subnet_then_overflows_to_the_next(api, schema_url, api_backend, api_drivers):
    net, first, second = two_small_subnets(api)
    slaac = mk(
        api,
        "subnet",
        network_id=net,
        ip_version=6,
        cidr="2001:db8:5::/64",
        ipv6_address_mode="slaac",
        ipv6_ra_mode="slaac",
    )["id"]
    leave_free(api, net, first, 4)
    before = {f["ip_address"] for p in all_ports(api) for f in p["fixed_ips"]}
    made = ok(bulk(api, [{"network_id": net, "name": f"p{i}"} for i in range(10)]), 201)["ports"]

    assert [p["name"] for p in made] == [f"p{i}" for i in range(10)]
    v4 = [[f for f in p["fixed_ips"] if f["subnet_id"] != slaac] for p in made]
    assert all(len(f) == 1 for f in v4), v4
    # In order, as one create after the other: the first subnet's 4 free addresses, then the next.
    assert [f[0]["subnet_id"] for f in v4] == [first] * 4 + [second] * 6
    addresses = [f[0]["ip_address"] for f in v4]
    assert len(set(addresses)) == 10 and not set(addresses) & before
    # Each port also has the EUI-64 address of its own MAC on the SLAAC subnet.
    for p in made:
        assert {"subnet_id": slaac, "ip_address": eui64("2001:db8:5::/64", p["mac_address"])} in p["fixed_ips"]
    # What the API answered is what it stores, and the backend agrees with the core tables.
    listed = {p["id"]: p["fixed_ips"] for p in all_ports(api)}
    assert all(sorted(map(str, listed[p["id"]])) == sorted(map(str, p["fixed_ips"])) for p in made)
    verify_clean(schema_url, api_backend, api_drivers)


def test_bulk_bigger_than_the_free_space_fails_as_one_by_one_and_leaves_nothing(api):
    net, _, _ = two_small_subnets(api)
    body = err(bulk(api, [{"network_id": net}] * 27), 409, "IpAddressGenerationFailure")  # 26 free
    assert all_ports(api) == []
    # Nothing stayed allocated: the 26 free addresses all go to the next bulk...
    made = ok(bulk(api, [{"network_id": net}] * 26), 201)["ports"]
    assert len({p["fixed_ips"][0]["ip_address"] for p in made}) == 26
    # ... and the error was the one a port create gives when the network is full.
    assert err(api.post("/v2.0/ports", json={"port": {"network_id": net}}), 409) == body


def test_a_port_with_fixed_ips_gets_its_turn_in_request_order(api):
    net, first, second = two_small_subnets(api)
    leave_free(api, net, first, 2)
    # One after the other, the two ports before it take the first subnet's last addresses, so the third,
    # which asks for that subnet, finds none: the whole bulk fails.
    named = {"network_id": net, "fixed_ips": [{"subnet_id": first}]}
    err(
        bulk(api, [{"network_id": net}, {"network_id": net}, named, {"network_id": net}]),
        409,
        "IpAddressGenerationFailure",
    )
    assert len(all_ports(api)) == 11
    # Asked first, it gets one; the ports after it overflow to the next subnet.
    made = ok(bulk(api, [named, {"network_id": net}, {"network_id": net}]), 201)["ports"]
    assert [p["fixed_ips"][0]["subnet_id"] for p in made] == [first, first, second]


def test_an_error_of_a_later_port_comes_after_an_earlier_ports_exhaustion(api):
    net, _, _ = two_small_subnets(api)
    missing = "00000000-0000-0000-0000-000000000000"
    # One by one, the 27th port finds the network full before the 28th names a network that does not exist.
    err(bulk(api, [{"network_id": net}] * 27 + [{"network_id": missing}]), 409, "IpAddressGenerationFailure")
    err(bulk(api, [{"network_id": net}] * 26 + [{"network_id": missing}]), 404, "NetworkNotFound")
    assert all_ports(api) == []


def test_the_first_port_to_find_its_network_full_names_the_error(api):
    small = {}
    for name, cidr in (("a", "10.7.0.0/29"), ("b", "10.8.0.0/29")):  # 5 pool addresses each
        small[name] = mk(api, "network", name=name)["id"]
        mk(api, "subnet", network_id=small[name], ip_version=4, cidr=cidr)
    a, b = {"network_id": small["a"]}, {"network_id": small["b"]}
    # One by one, the 6th port on b (the 8th port) fails before the 6th on a (the 10th); and the other way.
    body = err(bulk(api, [a, a] + [b] * 6 + [a] * 4), 409, "IpAddressGenerationFailure")
    assert small["b"] in body["message"]
    body = err(bulk(api, [b] * 2 + [a] * 6 + [b] * 4), 409, "IpAddressGenerationFailure")
    assert small["a"] in body["message"]
    assert all_ports(api) == []


def test_ports_that_name_one_subnet_take_its_addresses_in_order_and_do_not_overflow(api):
    net, first, second = two_small_subnets(api)
    leave_free(api, net, first, 3)
    named = {"network_id": net, "fixed_ips": [{"subnet_id": first}]}
    # One after the other: the default port takes one of the 3 free addresses, the named ones the other
    # two, and the third named one finds none; naming a subnet never moves on to the next one.
    err(bulk(api, [{"network_id": net}, named, named, named]), 409, "IpAddressGenerationFailure")
    assert len(all_ports(api)) == 10
    # Named first, they take the free addresses; the default port after them overflows.
    made = ok(bulk(api, [named, named, named, {"network_id": net}]), 201)["ports"]
    assert [p["fixed_ips"][0]["subnet_id"] for p in made] == [first, first, first, second]
    assert len({p["fixed_ips"][0]["ip_address"] for p in made}) == 4
    listed = {p["id"]: p["fixed_ips"] for p in all_ports(api)}
    assert all(listed[p["id"]] == p["fixed_ips"] for p in made)


def test_a_named_subnets_exhaustion_comes_before_a_later_ports_error(api):
    net, first, _ = two_small_subnets(api)
    leave_free(api, net, first, 2)
    named = {"network_id": net, "fixed_ips": [{"subnet_id": first}]}
    missing = "00000000-0000-0000-0000-000000000000"
    err(bulk(api, [named] * 3 + [{"network_id": missing}]), 409, "IpAddressGenerationFailure")
    err(bulk(api, [named] * 2 + [{"network_id": missing}]), 404, "NetworkNotFound")
    # A subnet of another network, named by a later port, is refused as for a single create.
    other = mk(api, "network", name="other")["id"]
    foreign = {"network_id": other, "fixed_ips": [{"subnet_id": first}]}
    err(bulk(api, [named, foreign]), 400, "InvalidInput")
    assert len(all_ports(api)) == 11


def dual_stack(api, slaac: bool = False) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """A network with a /28 IPv4 subnet (13 pool addresses) and an IPv6 one: DHCPv6-stateful, or SLAAC."""
    net = mk(api, "network", name="dual")["id"]
    v4 = mk(api, "subnet", network_id=net, ip_version=4, cidr="10.9.0.0/28")["id"]
    mode = "slaac" if slaac else "dhcpv6-stateful"
    v6 = mk(
        api,
        "subnet",
        network_id=net,
        ip_version=6,
        cidr="2001:db8:9::/64",
        ipv6_address_mode=mode,
        ipv6_ra_mode=mode,
    )["id"]
    return net, v4, v6


def test_dual_stack_ports_naming_both_subnets_get_one_address_of_each_in_order(api):
    net, v4, v6 = dual_stack(api)
    both = {"network_id": net, "fixed_ips": [{"subnet_id": v4}, {"subnet_id": v6}]}
    v4_only = {"network_id": net, "fixed_ips": [{"subnet_id": v4}]}
    made = ok(bulk(api, [both, both, v4_only, both, {"network_id": net}, both]), 201)["ports"]
    subnets = [sorted(f["subnet_id"] for f in p["fixed_ips"]) for p in made]
    assert subnets == [sorted([v4, v6])] * 2 + [[v4]] + [sorted([v4, v6])] * 3
    addresses = [f["ip_address"] for p in made for f in p["fixed_ips"]]
    assert len(set(addresses)) == len(addresses) == 11
    listed = {p["id"]: p["fixed_ips"] for p in all_ports(api)}
    assert all(listed[p["id"]] == p["fixed_ips"] for p in made)
    # 7 of the 13 IPv4 addresses are left: the 8th port of a dual-stack bulk finds none, and the whole bulk
    # fails as one create after the other would, with the network's error, leaving nothing behind.
    body = err(bulk(api, [both] * 8), 409, "IpAddressGenerationFailure")
    assert net in body["message"]
    assert len(all_ports(api)) == 6
    assert len(ok(bulk(api, [both] * 7), 201)["ports"]) == 7


def test_a_dual_stack_subnets_exhaustion_comes_before_a_later_ports_error(api):
    net, v4, v6 = dual_stack(api)
    both = {"network_id": net, "fixed_ips": [{"subnet_id": v4}, {"subnet_id": v6}]}
    ok(bulk(api, [{"network_id": net, "fixed_ips": [{"subnet_id": v4}]}] * 11), 201)  # 2 IPv4 left
    missing = "00000000-0000-0000-0000-000000000000"
    err(bulk(api, [both] * 3 + [{"network_id": missing}]), 409, "IpAddressGenerationFailure")
    err(bulk(api, [both] * 2 + [{"network_id": missing}]), 404, "NetworkNotFound")
    # The IPv6 subnet's addresses of the failed bulks were given back with the rest.
    made = ok(bulk(api, [both] * 2 + [{"network_id": net, "fixed_ips": [{"subnet_id": v6}]}]), 201)["ports"]
    assert [len(p["fixed_ips"]) for p in made] == [2, 2, 1]
    assert len(all_ports(api)) == 14


def test_dual_stack_ports_naming_a_slaac_subnet_get_their_own_eui64(api, schema_url, api_backend, api_drivers):
    net, v4, v6 = dual_stack(api, slaac=True)
    both = {"network_id": net, "fixed_ips": [{"subnet_id": v4}, {"subnet_id": v6}]}
    given = {**both, "mac_address": "fa:16:3e:00:00:01"}
    made = ok(bulk(api, [both, given, both, both]), 201)["ports"]
    assert made[1]["mac_address"] == "fa:16:3e:00:00:01"
    for p in made:
        assert {"subnet_id": v6, "ip_address": eui64("2001:db8:9::/64", p["mac_address"])} in p["fixed_ips"]
        assert [f["subnet_id"] for f in p["fixed_ips"]].count(v4) == 1
    assert len({f["ip_address"] for p in made for f in p["fixed_ips"]}) == 8
    verify_clean(schema_url, api_backend, api_drivers)
