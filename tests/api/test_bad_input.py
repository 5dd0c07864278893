"""Bad input over HTTP, on every database: a clear 4xx in Neutron's format, never a 5xx (issue 14)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import MAX_BULK, MAX_PAGE_SIZE
from tests.api.wire import err, mk, ok

NUL = "a\x00b"

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def test_nul_in_bodies_filters_and_paths_is_400(api):
    """PostgreSQL cannot store or even compare a NUL character: refused before any query, everywhere."""
    err(api.post("/v2.0/networks", json={"network": {"name": NUL}}), 400)
    err(api.post("/v2.0/networks", json={"networks": [{"name": "ok"}, {"description": NUL}]}), 400)
    net = mk(api, "network", name="n")
    err(api.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": NUL}}), 400)
    err(api.post("/v2.0/subnetpools", json={"subnetpool": {"name": NUL, "prefixes": ["10.0.0.0/8"]}}), 400)
    err(api.put(f"/v2.0/networks/{net['id']}/tags", json={"tags": [NUL]}), 400)
    for query in ("name=a%00b", "id=a%00b", "network_id=a%00b", "tags=a%00b", "sort_key=na%00me", "fields=na%00me"):
        resp = api.get(f"/v2.0/subnets?{query}")
        assert resp.status_code < 500, (query, resp.text)
    err(api.get("/v2.0/networks?name=a%00b"), 400)
    err(api.get("/v2.0/ports?device_id=a%00b"), 400)
    assert api.get("/v2.0/networks?marker=a%00b").status_code in (400, 404)
    for path in (f"/v2.0/networks/{NUL}", f"/v2.0/ports/{NUL}/tags", f"/v2.0/networks/{net['id']}/tags/{NUL}"):
        err(api.get(path.replace("\x00", "%00")), 400)
    err(api.delete("/v2.0/subnets/a%00b"), 400)
    # Nothing was stored on the way.
    assert [n["name"] for n in ok(api.get("/v2.0/networks"))["networks"]] == ["n"]


def test_a_lone_surrogate_in_a_body_is_400(api):
    """JSON may escape half a surrogate pair ("\\ud800"); no database stores it (UTF-8 cannot encode it),
    so it is refused as bad input, not failed on as a 500, wherever a body carries text."""
    lone = "x\ud800"

    def escaped(body: object) -> dict[str, object]:  # httpx's own encoding cannot write a lone surrogate
        return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}

    err(api.post("/v2.0/networks", **escaped({"network": {"name": lone}})), 400)
    err(api.post("/v2.0/networks", **escaped({"networks": [{"name": "ok"}, {"description": lone}]})), 400)
    net = mk(api, "network", name="n")
    err(api.put(f"/v2.0/networks/{net['id']}", **escaped({"network": {"name": lone}})), 400)
    err(api.put(f"/v2.0/networks/{net['id']}/tags", **escaped({"tags": [lone]})), 400)
    err(api.post("/v2.0/ports", **escaped({"port": {"network_id": net["id"], "tags": [lone]}})), 400)
    err(api.post("/v2.0/ports", **escaped({"port": {"network_id": net["id"], "device_owner": lone}})), 400)
    for path in (f"/v2.0/networks/{net['id']}/tags/%ED%A0%80", "/v2.0/networks?name=%ED%A0%80"):
        assert api.get(path).status_code < 500, path
    # A whole pair is text, and kept as sent.
    assert mk(api, "network", name="\U0001f600")["name"] == "\U0001f600"
    assert sorted(n["name"] for n in ok(api.get("/v2.0/networks"))["networks"]) == ["n", "\U0001f600"]
    assert ok(api.get("/v2.0/ports"))["ports"] == []


@pytest.mark.parametrize(
    "cidr",
    [" 10.1.0.0/24", "10.1.0.0/24 ", "10.1.0.0 /24", "\t10.1.0.0/24", "fd00:: /64"],
)
def test_whitespace_around_a_cidr_is_400(api, cidr):
    net = mk(api, "network")
    version = 6 if ":" in cidr else 4
    err(api.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": cidr, "ip_version": version}}), 400)
    err(api.post("/v2.0/subnetpools", json={"subnetpool": {"name": "p", "prefixes": [cidr]}}), 400)


def test_whitespace_around_an_address_is_400(api):
    net = mk(api, "network")
    sub = mk(api, "subnet", network_id=net["id"], cidr="10.1.0.0/24", ip_version=4)
    err(api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": " 10.1.0.9"}}), 400)
    fixed = [{"subnet_id": sub["id"], "ip_address": "10.1.0.7 "}]
    err(api.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": fixed}}), 400)


@pytest.mark.parametrize("mac", ["1.0.0.0", "1-2-3-4-5-6-7-8", "fa:16:3e:00:00:01:02:03", "fa:16:3e:00:01"])
def test_a_mac_that_is_not_48_bits_is_400(api, mac):
    """netaddr reads "1.0.0.0" as an EUI-64, which a port's MAC cannot be (it answered 500, in the fuzz)."""
    net = mk(api, "network")
    expected = f"Invalid input for mac_address. Reason: '{mac}' is not a valid MAC address."
    for body in (
        {"port": {"network_id": net["id"], "mac_address": mac}},
        {"ports": [{"network_id": net["id"]}, {"network_id": net["id"], "mac_address": mac}]},
    ):
        assert err(api.post("/v2.0/ports", json=body), 400, "HTTPBadRequest")["message"] == expected
    made = mk(api, "port", network_id=net["id"])
    err(api.put(f"/v2.0/ports/{made['id']}", json={"port": {"mac_address": mac}}), 400, "HTTPBadRequest")
    assert len(ok(api.get("/v2.0/ports"))["ports"]) == 1


def test_host_bits_are_cleared_as_neutron_does(api):
    net = mk(api, "network")
    assert mk(api, "subnet", network_id=net["id"], cidr="10.0.0.1/24", ip_version=4)["cidr"] == "10.0.0.0/24"


DHCP_REFUSED = [
    ("10.0.0.0/31", "Subnet has a prefix length that is incompatible with DHCP service enabled"),
    ("10.0.0.4/32", "Subnet has a prefix length that is incompatible with DHCP service enabled"),
    ("fd00::/127", "Subnet has a prefix length that is incompatible with DHCP service enabled"),
    ("fd00::/128", "Subnet has a prefix length that is incompatible with DHCP service enabled"),
    ("224.0.0.0/24", "Multicast IP subnet is not supported if enable_dhcp is True"),
    ("ff05::/64", "Multicast IP subnet is not supported if enable_dhcp is True"),
    ("127.0.0.0/24", "Loopback IP subnet is not supported if enable_dhcp is True"),
    ("169.254.1.0/24", "Link-local IP subnet is not supported if enable_dhcp is True"),
    ("fe80::/64", "Link-local IP subnet is not supported if enable_dhcp is True"),
    ("0.0.0.0/24", "First IP '0.0.0.0' of network is not supported if enable_dhcp is True"),
]


@pytest.mark.parametrize(("cidr", "reason"), DHCP_REFUSED)
def test_dhcp_refuses_what_neutron_refuses(api, cidr, reason):
    net = mk(api, "network")
    body = {"network_id": net["id"], "cidr": cidr, "ip_version": 6 if ":" in cidr else 4}
    refused = err(api.post("/v2.0/subnets", json={"subnet": body}), 400, "InvalidInput")
    assert refused["message"] == f"Invalid input for operation: {reason}."
    # The same prefix without DHCP is a subnet like any other.
    made = mk(api, "subnet", **body, enable_dhcp=False)
    assert made["enable_dhcp"] is False
    # ... until DHCP is turned on.
    err(api.put(f"/v2.0/subnets/{made['id']}", json={"subnet": {"enable_dhcp": True}}), 400, "InvalidInput")
    assert ok(api.get(f"/v2.0/subnets/{made['id']}"))["subnet"]["enable_dhcp"] is False


def test_dhcp_limits_are_inclusive(api):
    net = mk(api, "network")
    assert mk(api, "subnet", network_id=net["id"], cidr="10.0.0.0/30", ip_version=4)["enable_dhcp"] is True
    assert mk(api, "subnet", network_id=net["id"], cidr="fd00::/126", ip_version=6)["enable_dhcp"] is True


def test_gateway_update_onto_a_held_address_is_409_naming_the_port(api):
    net = mk(api, "network")
    sub = mk(
        api,
        "subnet",
        network_id=net["id"],
        cidr="10.5.0.0/24",
        ip_version=4,
        allocation_pools=[{"start": "10.5.0.100", "end": "10.5.0.200"}],
    )
    port = mk(api, "port", network_id=net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.5.0.7"}])
    refused = err(api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": "10.5.0.7"}}), 409)
    assert refused["type"] == "GatewayIpInUse" and port["id"] in refused["message"]
    assert ok(api.get(f"/v2.0/subnets/{sub['id']}"))["subnet"]["gateway_ip"] == "10.5.0.1"
    # A free address, and the current gateway again, are fine.
    assert ok(api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": "10.5.0.8"}}))
    assert ok(api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": "10.5.0.8", "name": "x"}}))
    # A router's interface is what a gateway is for: its address may become the gateway.
    fixed = [{"subnet_id": sub["id"], "ip_address": "10.5.0.9"}]
    mk(api, "port", network_id=net["id"], fixed_ips=fixed, device_owner="network:router_interface")
    assert ok(api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": "10.5.0.9"}}))
    # Once the port lets the address go, it can become the gateway.
    assert api.delete(f"/v2.0/ports/{port['id']}").status_code == 204
    up = ok(api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": "10.5.0.7"}}))["subnet"]
    assert up["gateway_ip"] == "10.5.0.7"


def test_limit_above_the_page_size_is_capped(api):
    """Neutron caps a limit above its page size instead of refusing it."""
    for first in range(0, MAX_PAGE_SIZE + 1, MAX_BULK):
        count = min(MAX_BULK, MAX_PAGE_SIZE + 1 - first)
        ok(api.post("/v2.0/networks", json={"networks": [{"name": f"n{first + i}"} for i in range(count)]}), 201)
    body = ok(api.get(f"/v2.0/networks?limit={MAX_PAGE_SIZE * 10}"))
    assert len(body["networks"]) == MAX_PAGE_SIZE
    following = next(link["href"] for link in body["networks_links"] if link["rel"] == "next")
    assert f"limit={MAX_PAGE_SIZE}" in following
    rest = ok(api.get(following.split(str(api.base_url).rstrip("/"), 1)[1]))
    assert len(rest["networks"]) == 1


def test_json_suffix_names_the_format(api):
    net = mk(api, "network", name="n")
    assert ok(api.get("/v2.0/networks.json"))["networks"][0]["id"] == net["id"]
    assert ok(api.get(f"/v2.0/networks/{net['id']}.json"))["network"]["id"] == net["id"]
    made = ok(api.post("/v2.0/networks.json", json={"network": {"name": "m"}}), 201)["network"]
    assert ok(api.put(f"/v2.0/networks/{made['id']}.json", json={"network": {"name": "o"}}))["network"]["name"] == "o"
    assert api.delete(f"/v2.0/networks/{made['id']}.json").status_code == 204
    err(api.get(f"/v2.0/networks/{made['id']}.json"), 404, "NetworkNotFound")


def test_body_content_type_is_not_checked_as_in_neutron(api):
    """Neutron's API (pecan's body hook) reads a JSON body whatever Content-Type says; so does Pipam.
    A body that is not JSON is a 400, whatever the type."""
    raw = json.dumps({"network": {"name": "plain"}}).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        made = ok(api.post("/v2.0/networks", content=raw, headers={"Content-Type": ctype}), 201)
        assert made["network"]["name"] == "plain"
    err(api.post("/v2.0/networks", content=b"name=plain", headers={"Content-Type": "text/plain"}), 400)


def test_no_5xx_on_odd_requests(api):
    """A sample of what a careless or hostile client sends."""
    net = mk(api, "network")
    odd = [
        ("GET", "/v2.0/networks?limit=-1", None),
        ("GET", "/v2.0/networks?limit=1e3", None),
        ("GET", "/v2.0/networks?sort_key=name&sort_dir=sideways", None),
        ("GET", "/v2.0/subnets?sort_key=gateway_ip&marker=" + net["id"], None),
        ("GET", "/v2.0/networks?page_reverse=True&marker=" + "x" * 100, None),
        ("PUT", f"/v2.0/networks/{net['id']}", b'{"network": {"name": "\\u0000"}}'),
        ("POST", "/v2.0/subnets", b'{"subnet": {"network_id": "\\u0000", "cidr": "10.0.0.0/24"}}'),
        ("POST", "/v2.0/ports", b'{"port": {"network_id": "' + net["id"].encode() + b'", "name": "\\u0000"}}'),
    ]
    for method, path, body in odd:
        resp = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.text)


def test_server_answers_with_httpx_default_headers(api):
    """A client that sends no Content-Type at all (curl -d without -H) is read as JSON too."""
    resp = httpx.post(
        f"{str(api.base_url).rstrip('/')}/v2.0/networks", content=b'{"network": {"name": "bare"}}', timeout=30
    )
    assert resp.status_code == 201, resp.text
