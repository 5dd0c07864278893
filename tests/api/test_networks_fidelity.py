"""Networks over HTTP as Neutron answers: external-net, MTU, revisions and If-Match, pagination,
subnet filters, unknown attributes."""

from __future__ import annotations

import pytest

from tests.api.wire import err, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def test_router_external(api):
    plain = mk(api, "network", name="plain")
    assert plain["router:external"] is False
    ext = mk(api, "network", name="ext", **{"router:external": True})
    assert ext["router:external"] is True
    assert [n["name"] for n in ok(api.get("/v2.0/networks?router:external=false"))["networks"]] == ["plain"]
    assert [n["name"] for n in ok(api.get("/v2.0/networks?router:external=True"))["networks"]] == ["ext"]
    up = ok(api.put(f"/v2.0/networks/{plain['id']}", json={"network": {"router:external": True}}))["network"]
    assert up["router:external"] is True
    assert len(ok(api.get("/v2.0/networks?router:external=true"))["networks"]) == 2
    err(api.get("/v2.0/networks?sort_key=router:external&sort_dir=asc"), 400)  # filterable, not sortable
    err(api.post("/v2.0/networks", json={"network": {"router:external": "maybe"}}), 400, "InvalidInput")


def test_mtu(api):
    assert mk(api, "network", name="n")["mtu"] == 1500  # global_physnet_mtu's default
    assert mk(api, "network", name="n", mtu=0)["mtu"] == 1500  # 0: the largest
    small = mk(api, "network", name="n", mtu=1400)
    assert small["mtu"] == 1400
    body = err(api.post("/v2.0/networks", json={"network": {"mtu": 1501}}), 400, "InvalidInput")
    assert body["message"] == "Invalid input for operation: Requested MTU is too big, maximum is 1500."
    err(api.put(f"/v2.0/networks/{small['id']}", json={"network": {"mtu": 9000}}), 400, "InvalidInput")
    assert ok(api.put(f"/v2.0/networks/{small['id']}", json={"network": {"mtu": 1300}}))["network"]["mtu"] == 1300
    assert [n["id"] for n in ok(api.get("/v2.0/networks?mtu=1300"))["networks"]] == [small["id"]]


def test_mtu_minimums_of_subnets(api):
    tiny = mk(api, "network", name="tiny", mtu=60)
    err(
        api.post("/v2.0/subnets", json={"subnet": {"network_id": tiny["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}}),
        409,
        "NetworkMtuSubnetConflict",
    )
    v4_only = mk(api, "network", name="v4", mtu=1000)
    mk(api, "subnet", network_id=v4_only["id"], ip_version=4, cidr="10.0.0.0/24")
    body = err(
        api.post(
            "/v2.0/subnets", json={"subnet": {"network_id": v4_only["id"], "ip_version": 6, "cidr": "2001:db8::/64"}}
        ),
        409,
        "NetworkMtuSubnetConflict",
    )
    assert "1280" in body["message"]
    err(api.put(f"/v2.0/networks/{v4_only['id']}", json={"network": {"mtu": 67}}), 409, "NetworkMtuSubnetConflict")
    dual = mk(api, "network", name="dual")
    mk(api, "subnet", network_id=dual["id"], ip_version=6, cidr="2001:db8::/64")
    err(api.put(f"/v2.0/networks/{dual['id']}", json={"network": {"mtu": 1279}}), 409, "NetworkMtuSubnetConflict")
    assert ok(api.put(f"/v2.0/networks/{dual['id']}", json={"network": {"mtu": 1280}}))["network"]["mtu"] == 1280


def test_subnets_change_the_networks_revision(api):
    net = mk(api, "network", name="n")

    def revision():  # type: ignore[no-untyped-def]
        return ok(api.get(f"/v2.0/networks/{net['id']}"))["network"]["revision_number"]

    sub = mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24")
    after_create = revision()
    assert after_create > net["revision_number"]
    assert api.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    assert revision() > after_create


@pytest.mark.parametrize("plural", ["networks", "subnets", "ports", "subnetpools"])
def test_if_match_revision_number(api, plural):
    net = mk(api, "network", name="n")
    made = {
        "networks": lambda: net,
        "subnets": lambda: mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24"),
        "ports": lambda: mk(api, "port", network_id=net["id"]),
        "subnetpools": lambda: mk(api, "subnetpool", name="p", prefixes=["10.9.0.0/16"]),
    }[plural]()
    path, singular = f"/v2.0/{plural}/{made['id']}", plural[:-1]
    current = ok(api.get(path))[singular]["revision_number"]
    stale = current - 1
    body = err(
        api.put(path, json={singular: {"name": "x"}}, headers={"If-Match": f"revision_number={stale}"}),
        412,
        "RevisionNumberConstraintFailed",
    )
    assert body["message"] == f"Constrained to {stale}, but current revision is {current}"
    assert ok(api.get(path))[singular]["name"] != "x"
    up = ok(api.put(path, json={singular: {"name": "x"}}, headers={"If-Match": f'"revision_number={current}"'}))
    assert up[singular]["revision_number"] == current + 1
    # Other entity tags are none of Pipam's business; a malformed revision is a bad request.
    ok(api.put(path, json={singular: {"name": "y"}}, headers={"If-Match": '"abc", W/"xyz"'}))
    err(api.put(path, json={singular: {"name": "z"}}, headers={"If-Match": "revision_number=two"}), 400, "BadRequest")
    err(
        api.put(path, json={singular: {"name": "z"}}, headers={"If-Match": "revision_number=1, revision_number=2"}),
        400,
        "BadRequest",
    )
    if plural == "networks":  # a network with its subnet on it cannot be deleted; the others can
        return
    err(api.delete(path, headers={"If-Match": f"revision_number={current}"}), 412, "RevisionNumberConstraintFailed")
    latest = ok(api.get(path))[singular]["revision_number"]
    assert api.delete(path, headers={"If-Match": f"revision_number={latest}"}).status_code == 204


def test_if_match_on_prefix_operations(api):
    made = mk(api, "subnetpool", name="p", prefixes=["10.9.0.0/16"])
    path = f"/v2.0/subnetpools/{made['id']}/add_prefixes"
    stale = {"If-Match": f"revision_number={made['revision_number'] + 5}"}
    err(api.put(path, json={"prefixes": ["10.10.0.0/16"]}, headers=stale), 412, "RevisionNumberConstraintFailed")
    fresh = {"If-Match": f"revision_number={made['revision_number']}"}
    assert ok(api.put(path, json={"prefixes": ["10.10.0.0/16"]}, headers=fresh))["prefixes"] == [
        "10.9.0.0/16",
        "10.10.0.0/16",
    ]


def test_subnets_filter_by_shared(api):
    shared = mk(api, "network", name="s", shared=True)
    private = mk(api, "network", name="p")
    on_shared = mk(api, "subnet", network_id=shared["id"], ip_version=4, cidr="10.0.0.0/24")
    on_private = mk(api, "subnet", network_id=private["id"], ip_version=4, cidr="10.1.0.0/24")
    assert [s["id"] for s in ok(api.get("/v2.0/subnets?shared=true"))["subnets"]] == [on_shared["id"]]
    assert [s["id"] for s in ok(api.get("/v2.0/subnets?shared=false"))["subnets"]] == [on_private["id"]]
    assert "shared" not in on_shared  # filterable, never shown


def test_full_page_has_next_and_the_walk_ends_on_an_empty_page(api):
    for i in range(10):
        mk(api, "network", name=f"n{i}")
    first = ok(api.get("/v2.0/networks?limit=10"))
    assert len(first["networks"]) == 10
    rels = {link["rel"]: link["href"] for link in first["networks_links"]}
    assert set(rels) == {"next"}  # the first page has no previous one
    last = ok(api.get(rels["next"]))
    assert last["networks"] == []
    assert "next" not in {link["rel"] for link in last.get("networks_links", [])}
    short = ok(api.get("/v2.0/networks?limit=4&sort_key=name&sort_dir=asc"))
    second = ok(api.get(next(link["href"] for link in short["networks_links"] if link["rel"] == "next")))
    assert {link["rel"] for link in second["networks_links"]} == {"next", "previous"}
    back = ok(api.get(next(link["href"] for link in second["networks_links"] if link["rel"] == "previous")))
    assert [n["name"] for n in back["networks"]] == ["n0", "n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("plural", "attribute", "value"),
    [
        ("ports", "port_security_enabled", False),
        ("ports", "security_groups", []),
        ("ports", "binding:host_id", "h"),
        ("ports", "allowed_address_pairs", []),
        ("networks", "qos_policy_id", None),
        ("networks", "dns_domain", "x."),
    ],
)
def test_unimplemented_attributes_are_refused(api, plural, attribute, value):
    body = {"name": "x", attribute: value}
    if plural == "ports":
        body["network_id"] = mk(api, "network", name="n")["id"]
    reply = err(api.post(f"/v2.0/{plural}", json={plural[:-1]: body}), 400, "HTTPBadRequest")
    assert reply["message"] == f"Unrecognized attribute(s) '{attribute}'"
