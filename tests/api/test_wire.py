"""The wire format: envelopes, attributes, errors, bulk, filters, fields, sorting, pagination."""

from __future__ import annotations

import pytest

from tests.api.wire import err, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def test_version_discovery_uses_request_host(api):
    body = ok(api.get("/", headers={"Host": "ipam.example:9696"}))
    assert body == {
        "versions": [
            {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": "http://ipam.example:9696/v2.0/"}]}
        ]
    }
    names = {r["collection"] for r in ok(api.get("/v2.0/"))["resources"]}
    assert {"networks", "subnets", "ports", "subnetpools", "network-ip-availabilities"} <= names


def test_extensions(api):
    aliases = {e["alias"] for e in ok(api.get("/v2.0/extensions"))["extensions"]}
    assert {"subnet_allocation", "network-ip-availability", "pagination", "sorting"} <= aliases
    assert ok(api.get("/v2.0/extensions/subnet_allocation"))["extension"]["alias"] == "subnet_allocation"
    err(api.get("/v2.0/extensions/router"), 404)


def test_crud_cycle_with_envelopes(api):
    net = mk(api, "network", name="n1", description="d")
    for key in ("id", "project_id", "tenant_id", "revision_number", "created_at", "updated_at", "tags", "subnets"):
        assert key in net
    sub = mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24", name="s")
    assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert ok(api.get(f"/v2.0/networks/{net['id']}"))["network"]["subnets"] == [sub["id"]]
    port = mk(api, "port", network_id=net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.0.0.9"}])
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.9"}]
    up = ok(api.put(f"/v2.0/ports/{port['id']}", json={"port": {"name": "x"}}))["port"]
    assert up["name"] == "x" and up["revision_number"] == 1
    err(api.delete(f"/v2.0/subnets/{sub['id']}"), 409, "SubnetInUse")
    assert api.delete(f"/v2.0/ports/{port['id']}").status_code == 204
    assert api.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    assert api.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    err(api.get(f"/v2.0/networks/{net['id']}"), 404, "NetworkNotFound")


def test_project_from_header_or_body(api):
    a = ok(api.post("/v2.0/networks", json={"network": {"name": "a"}}, headers={"X-Project-Id": "p1"}), 201)
    assert a["network"]["project_id"] == "p1" and a["network"]["tenant_id"] == "p1"
    b = mk(api, "network", name="b", tenant_id="p2")
    assert b["project_id"] == "p2"
    assert [n["name"] for n in ok(api.get("/v2.0/networks?tenant_id=p2"))["networks"]] == ["b"]


@pytest.mark.parametrize(
    ("body", "etype"),
    [
        ("{not json", "HTTPBadRequest"),
        ('{"network": {"name": 5}}', "HTTPBadRequest"),  # Neutron: a validator failure
        ('{"network": {"bogus": 1}}', "HTTPBadRequest"),
        ('{"network": []}', "HTTPBadRequest"),
        ('{"networks": []}', "HTTPBadRequest"),
        ("[]", "HTTPBadRequest"),
        ('{"network": {"admin_state_up": "maybe"}}', "InvalidInput"),  # a converter failure
        ('{"network": {"mtu": -1}}', "HTTPBadRequest"),
        ('{"network": {"name": "' + "x" * 300 + '"}}', "HTTPBadRequest"),
    ],
)
def test_malformed_bodies_are_400(api, body, etype):
    err(api.post("/v2.0/networks", content=body, headers={"Content-Type": "application/json"}), 400, etype)


def test_typed_conflicts_and_bad_input(api):
    net = mk(api, "network", name="n")
    sub = mk(api, "subnet", network_id=net["id"], ip_version="4", cidr="10.0.0.0/30")
    mk(api, "port", network_id=net["id"])
    err(api.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 409, "IpAddressGenerationFailure")
    err(
        api.post(
            "/v2.0/ports",
            json={"port": {"network_id": net["id"], "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.9.9.9"}]}},
        ),
        400,
        "InvalidIpForSubnet",
    )
    err(
        api.post(
            "/v2.0/subnets",
            json={
                "subnet": {
                    "network_id": net["id"],
                    "ip_version": 4,
                    "cidr": "10.1.0.0/24",
                    "allocation_pools": [
                        {"start": "10.1.0.5", "end": "10.1.0.9"},
                        {"start": "10.1.0.8", "end": "10.1.0.20"},
                    ],
                }
            },
        ),
        409,
        "OverlappingAllocationPools",
    )
    err(
        api.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "300.1.0.0/24"}}),
        400,
    )
    err(api.put("/v2.0/subnets/nope", json={"subnet": {"name": "x"}}), 404, "SubnetNotFound")
    err(api.delete("/v2.0/ports/nope"), 404, "PortNotFound")
    err(api.patch("/v2.0/ports"), 405)


def test_bulk_create_is_all_or_nothing(api):
    net = mk(api, "network", name="n")
    sub = mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24")
    ports = [{"network_id": net["id"], "fixed_ips": [{"ip_address": f"10.0.0.{i}"}]} for i in (5, 6, 7)]
    created = ok(api.post("/v2.0/ports", json={"ports": ports}), 201)["ports"]
    assert [p["fixed_ips"][0]["ip_address"] for p in created] == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    clash = [
        {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.8"}]},
        {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.5"}]},
    ]
    err(api.post("/v2.0/ports", json={"ports": clash}), 409, "IpAddressAlreadyAllocated")
    # 10.0.0.8 was not kept from the failed bulk.
    mk(api, "port", network_id=net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.0.0.8"}])
    too_many = [{"name": str(i)} for i in range(51)]
    err(api.post("/v2.0/networks", json={"networks": too_many}), 400)


def test_filters_fields_sorting(api):
    for name, shared in (("b", True), ("a", False), ("c", False)):
        mk(api, "network", name=name, shared=shared)
    got = ok(api.get("/v2.0/networks", params=[("name", "a"), ("name", "c")]))["networks"]
    assert sorted(n["name"] for n in got) == ["a", "c"]
    assert [n["name"] for n in ok(api.get("/v2.0/networks?shared=true"))["networks"]] == ["b"]
    got = ok(api.get("/v2.0/networks?fields=name&fields=id&sort_key=name&sort_dir=desc"))["networks"]
    assert [set(n) for n in got] == [{"name", "id"}] * 3
    assert [n["name"] for n in got] == ["c", "b", "a"]
    err(api.get("/v2.0/networks?bogus=1"), 400)
    err(api.get("/v2.0/networks?sort_key=name&sort_dir=sideways"), 400)
    err(api.get("/v2.0/networks?limit=abc"), 400)
    assert len(ok(api.get("/v2.0/networks?limit=1000"))["networks"]) == 3  # above the page cap: capped, as Neutron does
    one = ok(api.get("/v2.0/networks?fields=name&name=b"))["networks"]
    assert one == [{"name": "b"}]


def test_pagination_walks_every_item_once(api):
    names = [f"n{i:02d}" for i in range(7)]
    for name in names:
        mk(api, "network", name=name)
    seen = []
    url = "/v2.0/networks?limit=3&sort_key=name&sort_dir=asc"
    pages = 0
    while url:
        body = ok(api.get(url))
        seen += [n["name"] for n in body["networks"]]
        nxt = [link["href"] for link in body.get("networks_links", []) if link["rel"] == "next"]
        url = nxt[0] if nxt else None
        pages += 1
    assert seen == names and pages == 3
    body = ok(api.get("/v2.0/networks?limit=3&sort_key=name&sort_dir=asc"))
    last = body["networks"][-1]["id"]
    back = ok(api.get(f"/v2.0/networks?limit=2&sort_key=name&sort_dir=asc&marker={last}&page_reverse=True"))
    assert [n["name"] for n in back["networks"]] == ["n00", "n01"]
    err(api.get("/v2.0/networks?marker=00000000-0000-0000-0000-000000000000"), 404)


def test_pagination_by_a_boolean_key(api):
    """A marker compared on a boolean column (found by tests/api/test_isolation_property.py: a 500)."""
    for name, shared in (("a", True), ("b", False), ("c", True), ("d", False)):
        mk(api, "network", name=name, shared=shared)
    for direction, order in (("asc", ["b", "d", "a", "c"]), ("desc", ["a", "c", "b", "d"])):
        url = f"/v2.0/networks?limit=1&sort_key=shared&sort_dir={direction}&sort_key=name&sort_dir=asc"
        seen = []
        while url:
            body = ok(api.get(url))
            seen += [n["name"] for n in body["networks"]]
            url = next((link["href"] for link in body.get("networks_links", []) if link["rel"] == "next"), None)
        assert seen == order, direction


def test_port_fixed_ips_filter(api):
    net = mk(api, "network", name="n")
    sub = mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24")
    p = mk(api, "port", network_id=net["id"], fixed_ips=[{"ip_address": "10.0.0.77"}])
    mk(api, "port", network_id=net["id"])
    got = ok(api.get("/v2.0/ports?fixed_ips=ip_address%3D10.0.0.77"))["ports"]
    assert [x["id"] for x in got] == [p["id"]]
    assert len(ok(api.get(f"/v2.0/ports?fixed_ips=subnet_id%3D{sub['id']}"))["ports"]) == 2


def test_ip_availability(api):
    net = mk(api, "network", name="n")
    mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/28")
    mk(api, "subnet", network_id=net["id"], ip_version=6, cidr="2001:db8::/120")
    mk(api, "port", network_id=net["id"])
    one = ok(api.get(f"/v2.0/network-ip-availabilities/{net['id']}"))["network_ip_availability"]
    assert (one["total_ips"], one["used_ips"]) == (13 + 254, 2)
    assert {s["ip_version"]: s["used_ips"] for s in one["subnet_ip_availability"]} == {4: 1, 6: 1}
    listed = ok(api.get("/v2.0/network-ip-availabilities?ip_version=4"))["network_ip_availabilities"]
    assert listed[0]["total_ips"] == 13
    err(api.get("/v2.0/network-ip-availabilities/nope"), 404)


def test_ip_availability_beyond_64_bits(api):
    """A /56 holds 2**72 addresses: written as an exact JSON integer, not a server error."""
    net = mk(api, "network", name="n")
    mk(api, "subnet", network_id=net["id"], ip_version=6, cidr="2001:db8::/56")
    one = ok(api.get(f"/v2.0/network-ip-availabilities/{net['id']}"))["network_ip_availability"]
    assert one["total_ips"] > 2**64
    assert ok(api.get("/v2.0/network-ip-availabilities"))["network_ip_availabilities"][0]["total_ips"] > 2**64


def test_tags(api):
    net = mk(api, "network", name="n")
    assert ok(api.put(f"/v2.0/networks/{net['id']}/tags", json={"tags": ["b", "a"]}))["tags"] == ["b", "a"]
    assert api.put(f"/v2.0/networks/{net['id']}/tags/c").status_code == 201
    assert ok(api.get(f"/v2.0/networks/{net['id']}/tags"))["tags"] == ["a", "b", "c"]
    assert len(ok(api.get("/v2.0/networks?tags=a,c"))["networks"]) == 1
    assert ok(api.get("/v2.0/networks?not-tags=a"))["networks"] == []
    assert api.delete(f"/v2.0/networks/{net['id']}/tags/a").status_code == 204
    err(api.delete(f"/v2.0/networks/{net['id']}/tags/zz"), 404)


def test_healthz_and_openapi(api):
    health = ok(api.get("/healthz"))
    assert health["status"] == "ok" and health["fenced"] is False
    doc = ok(api.get("/openapi.json"))
    assert "/v2.0/ports" in doc["paths"] and "requestBody" in doc["paths"]["/v2.0/ports"]["post"]


def test_body_size_cap(api):
    err(api.post("/v2.0/networks", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}), 413)
