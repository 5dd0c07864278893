"""Neutron's default policy on the attributes and resources of these extensions, with project tokens:
what only an admin may set, and what a project sees of others' address scopes and pools."""

from __future__ import annotations

import pytest

from tests.api.conftest import PHYSNET_MTU
from tests.api.wire import err, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def made(resp, singular):  # type: ignore[no-untyped-def]
    return ok(resp, 201)[singular]


def test_naming_another_project_is_a_bad_request(clients):
    a = clients["a"]
    for plural, body in (
        ("networks", {"name": "x"}),
        ("subnetpools", {"name": "x", "prefixes": ["10.0.0.0/8"]}),
        ("address-scopes", {"name": "x", "ip_version": 4}),
    ):
        singular = {"networks": "network", "subnetpools": "subnetpool", "address-scopes": "address_scope"}[plural]
        reply = err(a.post(f"/v2.0/{plural}", json={singular: {**body, "project_id": "proj-b"}}), 400, "HTTPBadRequest")
        assert reply["message"] == (
            "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires "
            "admin privileges"
        )
        made(a.post(f"/v2.0/{plural}", json={singular: {**body, "tenant_id": "proj-a"}}), singular)


@pytest.mark.parametrize(
    ("plural", "singular", "body", "attribute", "value"),
    [
        ("networks", "network", {"name": "x"}, "shared", True),
        ("networks", "network", {"name": "x"}, "router:external", True),
        ("subnetpools", "subnetpool", {"name": "x", "prefixes": ["10.0.0.0/8"]}, "shared", True),
        ("subnetpools", "subnetpool", {"name": "x", "prefixes": ["10.0.0.0/8"]}, "is_default", True),
        ("address-scopes", "address_scope", {"name": "x", "ip_version": 4}, "shared", True),
    ],
)
def test_admin_only_attributes(clients, plural, singular, body, attribute, value):
    a, admin = clients["a"], clients["admin"]
    reply = err(a.post(f"/v2.0/{plural}", json={singular: {**body, attribute: value}}), 403, "PolicyNotAuthorized")
    assert (
        reply["message"] == f"(rule:create_{singular} and rule:create_{singular}:{attribute}) is disallowed by policy"
    )
    # Sending the default is no request to set it (Neutron checks attributes a create really sets).
    own = made(a.post(f"/v2.0/{plural}", json={singular: {**body, attribute: False}}), singular)
    path = f"/v2.0/{plural}/{own['id']}"
    if attribute != "shared" or plural != "subnetpools":  # a pool's shared never changes
        for new in (True, False):  # on update any value is a request to change it
            err(a.put(path, json={singular: {attribute: new}}), 403, "PolicyNotAuthorized")
        assert ok(admin.put(path, json={singular: {attribute: value}}))[singular][attribute] == value


def test_only_an_admin_changes_a_mac(clients):
    a, admin = clients["a"], clients["admin"]
    net = made(a.post("/v2.0/networks", json={"network": {"name": "n"}}), "network")
    port = made(
        a.post("/v2.0/ports", json={"port": {"network_id": net["id"], "mac_address": "fa:16:3e:aa:00:01"}}), "port"
    )
    assert port["mac_address"] == "fa:16:3e:aa:00:01"  # on create the network's owner may choose it
    err(
        a.put(f"/v2.0/ports/{port['id']}", json={"port": {"mac_address": "fa:16:3e:aa:00:02"}}),
        403,
        "PolicyNotAuthorized",
    )
    err(a.put(f"/v2.0/ports/{port['id']}", json={"port": {"mac_address": None}}), 403, "PolicyNotAuthorized")
    up = ok(admin.put(f"/v2.0/ports/{port['id']}", json={"port": {"mac_address": "fa:16:3e:aa:00:02"}}))
    assert up["port"]["mac_address"] == "fa:16:3e:aa:00:02"


def test_address_scopes_of_other_projects(clients):
    a, b, admin = clients["a"], clients["b"], clients["admin"]
    private = made(
        admin.post("/v2.0/address-scopes", json={"address_scope": {"name": "adm", "ip_version": 4}}), "address_scope"
    )
    shared = made(
        admin.post("/v2.0/address-scopes", json={"address_scope": {"name": "pub", "ip_version": 4, "shared": True}}),
        "address_scope",
    )
    err(a.get(f"/v2.0/address-scopes/{private['id']}"), 404, "AddressScopeNotFound")
    assert [s["id"] for s in ok(a.get("/v2.0/address-scopes"))["address_scopes"]] == [shared["id"]]
    pool = {"name": "p", "prefixes": ["20.0.0.0/18"]}
    err(
        a.post("/v2.0/subnetpools", json={"subnetpool": {**pool, "address_scope_id": private["id"]}}),
        404,
        "AddressScopeNotFound",
    )
    joined = made(
        a.post("/v2.0/subnetpools", json={"subnetpool": {**pool, "address_scope_id": shared["id"]}}), "subnetpool"
    )
    # A pool in a scope of another project: only that project or an admin changes it.
    reply = err(
        a.put(f"/v2.0/subnetpools/{joined['id']}", json={"subnetpool": {"prefixes": ["20.0.0.0/18", "40.0.0.0/18"]}}),
        400,
        "IllegalSubnetPoolUpdate",
    )
    assert reply["message"] == (
        f"Illegal subnetpool update : subnetpool {joined['id']} cannot be updated when associated with shared "
        f"address scope {shared['id']}."
    )
    update = {"subnetpool": {"prefixes": ["20.0.0.0/18", "40.0.0.0/18"]}}
    ok(admin.put(f"/v2.0/subnetpools/{joined['id']}", json=update))
    # Project b does not see a's pool; it sees the admin's shared scope but may not delete it (403, as
    # Neutron answers when the caller may read what it may not change).
    err(b.put(f"/v2.0/subnetpools/{joined['id']}", json={"subnetpool": {"name": "mine"}}), 404)
    err(b.delete(f"/v2.0/address-scopes/{shared['id']}"), 403, "PolicyNotAuthorized")


def test_default_pools_serve_the_projects_that_see_them(clients):
    a, admin = clients["a"], clients["admin"]
    net = made(a.post("/v2.0/networks", json={"network": {"name": "n"}}), "network")
    want = {"subnet": {"network_id": net["id"], "ip_version": 4, "use_default_subnetpool": True}}
    pool = made(
        admin.post(
            "/v2.0/subnetpools",
            json={"subnetpool": {"name": "d", "prefixes": ["10.0.0.0/8"], "is_default": True, "default_prefixlen": 24}},
        ),
        "subnetpool",
    )
    body = err(a.post("/v2.0/subnets", json=want), 400, "BadRequest")
    assert body["message"] == "Bad subnets request: No default subnetpool found for IPv4."
    ok(admin.delete(f"/v2.0/subnetpools/{pool['id']}"), 204)
    made(
        admin.post(
            "/v2.0/subnetpools",
            json={
                "subnetpool": {
                    "name": "d",
                    "prefixes": ["10.0.0.0/8"],
                    "is_default": True,
                    "shared": True,
                    "default_prefixlen": 24,
                }
            },
        ),
        "subnetpool",
    )
    assert made(a.post("/v2.0/subnets", json=want), "subnet")["cidr"] == "10.0.0.0/24"


def test_physical_network_mtu_setting(clients):
    a = clients["a"]
    assert made(a.post("/v2.0/networks", json={"network": {"name": "n"}}), "network")["mtu"] == PHYSNET_MTU
    reply = err(a.post("/v2.0/networks", json={"network": {"mtu": PHYSNET_MTU + 1}}), 400, "InvalidInput")
    assert reply["message"] == f"Invalid input for operation: Requested MTU is too big, maximum is {PHYSNET_MTU}."
