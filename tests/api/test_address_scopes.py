"""Extension address-scope over HTTP: the resource, subnet pools joined to scopes, networks' scopes."""

from __future__ import annotations

import uuid

from tests.api.wire import err, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def scope(api, **body):  # type: ignore[no-untyped-def]
    return ok(api.post("/v2.0/address-scopes", json={"address_scope": {"name": "s", **body}}), 201)["address_scope"]


def pool(api, prefixes, **body):  # type: ignore[no-untyped-def]
    return mk(api, "subnetpool", name="p", prefixes=prefixes, **body)


def test_crud_and_body_shape(api):
    made = scope(api, ip_version=4, name="scope-a", project_id="p1")
    assert set(made) == {"id", "name", "project_id", "tenant_id", "shared", "ip_version"}
    assert (made["name"], made["shared"], made["ip_version"], made["tenant_id"]) == ("scope-a", False, 4, "p1")
    shown = ok(api.get(f"/v2.0/address-scopes/{made['id']}"))["address_scope"]
    assert shown == made
    listed = ok(api.get("/v2.0/address-scopes?ip_version=4"))["address_scopes"]
    assert [s["id"] for s in listed] == [made["id"]]
    assert ok(api.get("/v2.0/address-scopes?ip_version=6"))["address_scopes"] == []
    up = ok(api.put(f"/v2.0/address-scopes/{made['id']}", json={"address_scope": {"name": "b", "shared": True}}))
    assert (up["address_scope"]["name"], up["address_scope"]["shared"]) == ("b", True)
    assert api.delete(f"/v2.0/address-scopes/{made['id']}").status_code == 204
    body = err(api.get(f"/v2.0/address-scopes/{made['id']}"), 404, "AddressScopeNotFound")
    assert body["message"] == f"Address scope {made['id']} could not be found."
    assert "address-scopes" in {r["collection"] for r in ok(api.get("/v2.0/"))["resources"]}


def test_bad_requests(api):
    err(api.post("/v2.0/address-scopes", json={"address_scope": {"name": "x"}}), 400, "HTTPBadRequest")
    err(api.post("/v2.0/address-scopes", json={"address_scope": {"ip_version": 5}}), 400, "HTTPBadRequest")
    err(api.post("/v2.0/address-scopes", json={"address_scope": {"ip_version": 4, "tags": []}}), 400)
    made = scope(api, ip_version=6)
    body = err(api.put(f"/v2.0/address-scopes/{made['id']}", json={"address_scope": {"ip_version": 4}}), 400)
    assert body["message"] == "Cannot update read-only attribute ip_version"
    # Not a standard-attribute resource: no tag operations, no revision matching.
    assert api.get(f"/v2.0/address-scopes/{made['id']}/tags").status_code in (404, 405)
    err(
        api.put(
            f"/v2.0/address-scopes/{made['id']}",
            json={"address_scope": {"name": "x"}},
            headers={"If-Match": "revision_number=0"},
        ),
        400,
        "BadRequest",
    )


def test_shared_scope_cannot_be_unshared(api):
    made = scope(api, ip_version=4, shared=True)
    body = err(
        api.put(f"/v2.0/address-scopes/{made['id']}", json={"address_scope": {"name": "n", "shared": False}}),
        400,
        "AddressScopeUpdateError",
    )
    assert body["message"] == f"Unable to update address scope {made['id']} : Shared address scope can't be unshared."


def test_scope_in_use_cannot_be_deleted(api):
    made = scope(api, ip_version=4)
    p = pool(api, ["10.11.12.0/24"], address_scope_id=made["id"], min_prefixlen="29")
    assert p["address_scope_id"] == made["id"]
    body = err(api.delete(f"/v2.0/address-scopes/{made['id']}"), 409, "AddressScopeInUse")
    assert body["message"] == (
        f"Unable to complete operation on address scope {made['id']}. There are one or more subnet pools in use "
        "on the address scope."
    )
    ok(api.put(f"/v2.0/subnetpools/{p['id']}", json={"subnetpool": {"address_scope_id": None}}))
    assert api.delete(f"/v2.0/address-scopes/{made['id']}").status_code == 204


def test_pool_association_rules(api):
    v4, v6 = scope(api, ip_version=4), scope(api, ip_version=6)
    err(
        api.post(
            "/v2.0/subnetpools",
            json={"subnetpool": {"name": "p", "prefixes": ["10.0.0.0/8"], "address_scope_id": "foo-addr-scope"}},
        ),
        400,
    )
    err(
        api.post(
            "/v2.0/subnetpools",
            json={"subnetpool": {"name": "p", "prefixes": ["10.0.0.0/8"], "address_scope_id": str(uuid.uuid4())}},
        ),
        404,
        "AddressScopeNotFound",
    )
    body = err(
        api.post(
            "/v2.0/subnetpools",
            json={"subnetpool": {"name": "p", "prefixes": ["10.0.0.0/8"], "address_scope_id": v6["id"]}},
        ),
        400,
        "IllegalSubnetPoolIpVersionAssociationToAddressScope",
    )
    assert body["message"].endswith(
        f"cannot associate with address scope {v6['id']} because subnetpool ip_version is not 6."
    )
    first = pool(api, ["20.0.0.0/18", "30.0.0.0/18"], address_scope_id=v4["id"])
    # Overlapping prefixes in one scope: 409 on create, on update and on add_prefixes.
    body = err(
        api.post(
            "/v2.0/subnetpools",
            json={
                "subnetpool": {"name": "q", "prefixes": ["40.0.0.0/18", "30.0.0.0/12"], "address_scope_id": v4["id"]}
            },
        ),
        409,
        "AddressScopePrefixConflict",
    )
    assert body["message"] == (
        "Failed to associate address scope: subnetpools within an address scope must have unique prefixes."
    )
    second = pool(api, ["20.0.10.0/24"])
    err(
        api.put(f"/v2.0/subnetpools/{second['id']}", json={"subnetpool": {"address_scope_id": v4["id"]}}),
        409,
        "AddressScopePrefixConflict",
    )
    third = pool(api, ["50.0.0.0/18"], address_scope_id=v4["id"])
    err(
        api.put(f"/v2.0/subnetpools/{third['id']}", json={"subnetpool": {"prefixes": ["50.0.0.0/18", "20.0.0.0/12"]}}),
        409,
        "AddressScopePrefixConflict",
    )
    err(
        api.put(f"/v2.0/subnetpools/{third['id']}/add_prefixes", json={"prefixes": ["30.0.0.0/24"]}),
        409,
        "AddressScopePrefixConflict",
    )
    # Moving a pool to another scope and out of it.
    other = scope(api, ip_version=4)
    moved = ok(api.put(f"/v2.0/subnetpools/{first['id']}", json={"subnetpool": {"address_scope_id": other["id"]}}))
    assert moved["subnetpool"]["address_scope_id"] == other["id"]
    ok(api.put(f"/v2.0/subnetpools/{second['id']}", json={"subnetpool": {"address_scope_id": v4["id"]}}))


def test_networks_show_their_address_scopes(api):
    v4, v6 = scope(api, ip_version=4), scope(api, ip_version=6)
    p4 = pool(api, ["10.10.0.0/16"], address_scope_id=v4["id"], default_prefixlen=24)
    p6 = pool(api, ["2001:db8::/48"], address_scope_id=v6["id"], default_prefixlen=64)
    net = mk(api, "network", name="n")
    assert (net["ipv4_address_scope"], net["ipv6_address_scope"]) == (None, None)
    mk(api, "subnet", network_id=net["id"], ip_version=4, subnetpool_id=p4["id"])
    shown = ok(api.get(f"/v2.0/networks/{net['id']}"))["network"]
    assert (shown["ipv4_address_scope"], shown["ipv6_address_scope"]) == (v4["id"], None)
    mk(api, "subnet", network_id=net["id"], ip_version=6, subnetpool_id=p6["id"])
    listed = ok(api.get(f"/v2.0/networks?id={net['id']}"))["networks"][0]
    assert (listed["ipv4_address_scope"], listed["ipv6_address_scope"]) == (v4["id"], v6["id"])
    # The address-scope filter is not offered (Neutron: not filterable).
    err(api.get(f"/v2.0/networks?ipv4_address_scope={v4['id']}"), 400)


def test_network_scope_affinity(api):
    v4 = scope(api, ip_version=4)
    in_scope = pool(api, ["10.10.0.0/16"], address_scope_id=v4["id"], default_prefixlen=24)
    same_scope = pool(api, ["10.20.0.0/16"], address_scope_id=v4["id"], default_prefixlen=24)
    outside = pool(api, ["10.30.0.0/16"], default_prefixlen=24)
    net = mk(api, "network", name="n")
    mk(api, "subnet", network_id=net["id"], ip_version=4, subnetpool_id=in_scope["id"])
    # Another pool of the same scope may serve the same network; a pool outside the scope may not.
    mk(api, "subnet", network_id=net["id"], ip_version=4, subnetpool_id=same_scope["id"])
    body = err(
        api.post(
            "/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "subnetpool_id": outside["id"]}}
        ),
        400,
        "NetworkAddressScopeAffinityError",
    )
    assert body["message"] == (
        "Subnets of the same address family hosted on the same network must all participate in the same address scope."
    )
    err(
        api.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "192.0.2.0/24"}}),
        400,
        "NetworkSubnetPoolAffinityError",
    )
    # Re-scoping a pool whose network also holds another pool's subnet would split the network.
    other = scope(api, ip_version=4)
    err(
        api.put(f"/v2.0/subnetpools/{in_scope['id']}", json={"subnetpool": {"address_scope_id": other["id"]}}),
        400,
        "NetworkAddressScopeAffinityError",
    )
