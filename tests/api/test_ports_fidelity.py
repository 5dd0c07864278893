"""Ports over HTTP as Neutron answers: an admin's MAC change (and regeneration), IP substring filters."""

from __future__ import annotations

import ipaddress

from tests.api.conftest import verify_clean
from tests.api.wire import err, eui64, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def test_admin_changes_a_mac_and_its_eui64_address_follows(api, schema_url, api_backend, api_drivers):
    net = mk(api, "network", name="n")
    v4 = mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24")
    slaac = mk(
        api,
        "subnet",
        network_id=net["id"],
        ip_version=6,
        cidr="2001:db8::/64",
        ipv6_address_mode="slaac",
        ipv6_ra_mode="slaac",
    )
    port = mk(api, "port", network_id=net["id"])
    v4_ip = next(f["ip_address"] for f in port["fixed_ips"] if f["subnet_id"] == v4["id"])
    new_mac = "fa:16:3e:12:34:56"
    up = ok(api.put(f"/v2.0/ports/{port['id']}", json={"port": {"mac_address": new_mac}}))["port"]
    assert up["mac_address"] == new_mac
    assert sorted((f["subnet_id"], f["ip_address"]) for f in up["fixed_ips"]) == sorted(
        [(v4["id"], v4_ip), (slaac["id"], eui64("2001:db8::/64", new_mac))]
    )
    assert up["revision_number"] == port["revision_number"] + 1
    # null: a new random MAC (port-mac-address-regenerate), and a new EUI-64 address with it.
    again = ok(api.put(f"/v2.0/ports/{port['id']}", json={"port": {"mac_address": None}}))["port"]
    assert again["mac_address"] not in (new_mac, port["mac_address"])
    assert eui64("2001:db8::/64", again["mac_address"]) in [f["ip_address"] for f in again["fixed_ips"]]
    # The old EUI-64 address is free again: another port may take that MAC and that address.
    other = mk(api, "port", network_id=net["id"], mac_address=new_mac)
    assert eui64("2001:db8::/64", new_mac) in [f["ip_address"] for f in other["fixed_ips"]]
    verify_clean(schema_url, api_backend, api_drivers)


def test_mac_change_refusals(api):
    net = mk(api, "network", name="n")
    mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24")
    a = mk(api, "port", network_id=net["id"])
    b = mk(api, "port", network_id=net["id"])
    body = err(
        api.put(f"/v2.0/ports/{b['id']}", json={"port": {"mac_address": a["mac_address"]}}), 409, "MacAddressInUse"
    )
    assert body["message"] == (
        f"Unable to complete operation for network {net['id']}. The mac address {a['mac_address']} is in use."
    )
    router = mk(api, "port", network_id=net["id"], device_owner="network:router_interface", fixed_ips=[])
    body = err(
        api.put(f"/v2.0/ports/{router['id']}", json={"port": {"mac_address": "fa:16:3e:00:00:99"}}),
        409,
        "UnsupportedPortDeviceOwner",
    )
    assert body["message"] == (
        "Operation mac address update is not supported for device_owner network:router_interface on port "
        f"{router['id']}."
    )
    err(api.put(f"/v2.0/ports/{b['id']}", json={"port": {"mac_address": "not-a-mac"}}), 400, "HTTPBadRequest")
    # The same MAC again is no change; a MAC used on another network is no conflict.
    ok(api.put(f"/v2.0/ports/{a['id']}", json={"port": {"mac_address": a["mac_address"]}}))
    elsewhere = mk(api, "network", name="m")
    c = mk(api, "port", network_id=elsewhere["id"])
    assert (
        ok(api.put(f"/v2.0/ports/{c['id']}", json={"port": {"mac_address": a["mac_address"]}}))["port"]["mac_address"]
        == a["mac_address"]
    )


def test_ip_address_substring_filter(api):
    """Neutron's own check: a prefix of an address finds its port; a shared prefix finds both."""
    net = mk(api, "network", name="n")
    mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.20.0.0/16")
    v6 = mk(
        api, "subnet", network_id=net["id"], ip_version=6, cidr="2001:db8::/64", ipv6_address_mode="dhcpv6-stateful"
    )
    p1 = mk(api, "port", network_id=net["id"], fixed_ips=[{"ip_address": "10.20.1.15"}])
    p2 = mk(api, "port", network_id=net["id"], fixed_ips=[{"ip_address": "10.20.31.5"}])
    p6 = mk(api, "port", network_id=net["id"], fixed_ips=[{"subnet_id": v6["id"], "ip_address": "2001:db8::abcd"}])

    def found(value: str) -> list[str]:
        return sorted(p["id"] for p in ok(api.get("/v2.0/ports", params={"fixed_ips": value}))["ports"])

    assert found("ip_address_substr=10.20.1.1") == [p1["id"]]
    assert found("ip_address_substr=10.20.") == sorted([p1["id"], p2["id"]])
    assert found("ip_address_substr=.31.") == [p2["id"]]
    assert found("ip_address_substr=db8::ab") == [p6["id"]]
    assert found("ip_address_substr=%") == []  # LIKE wildcards are plain characters here
    assert found("ip_address_substr=_") == []
    assert found(f"ip_address={ipaddress.ip_address('10.20.31.5')}") == [p2["id"]]
    err(api.get("/v2.0/ports", params={"fixed_ips": "mac=1"}), 400)
