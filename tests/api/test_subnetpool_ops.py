"""Subnet pools over HTTP: prefix lengths as strings, default pools, prefix operations, same-pool rule."""

from __future__ import annotations

from tests.api.wire import err, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def pool(api, prefixes, **body):  # type: ignore[no-untyped-def]
    return mk(api, "subnetpool", name="p", prefixes=prefixes, **body)


def subnet_body(network_id, **body):  # type: ignore[no-untyped-def]
    return {"subnet": {"network_id": network_id, **body}}


def test_prefix_lengths_are_strings_everywhere(api):
    made = pool(api, ["10.11.12.0/24"], min_prefixlen="29")
    lengths = ("min_prefixlen", "default_prefixlen", "max_prefixlen")
    assert [made[k] for k in lengths] == ["29", "29", "32"]
    assert [ok(api.get(f"/v2.0/subnetpools/{made['id']}"))["subnetpool"][k] for k in lengths] == ["29", "29", "32"]
    assert [ok(api.get("/v2.0/subnetpools"))["subnetpools"][0][k] for k in lengths] == ["29", "29", "32"]
    # Pipam's choice: the update response shows strings too (Neutron's shows integers, a bug of its own).
    up = ok(api.put(f"/v2.0/subnetpools/{made['id']}", json={"subnetpool": {"min_prefixlen": 28, "max_prefixlen": 30}}))
    assert [up["subnetpool"][k] for k in lengths] == ["28", "29", "30"]
    assert [ok(api.get("/v2.0/subnetpools?min_prefixlen=28"))["subnetpools"][0][k] for k in lengths] == [
        "28",
        "29",
        "30",
    ]


def test_prefix_errors_are_neutrons(api):
    def create(**body):  # type: ignore[no-untyped-def]
        return api.post("/v2.0/subnetpools", json={"subnetpool": {"name": "p", **body}})

    assert err(create(prefixes=[]), 400, "EmptySubnetPoolPrefixList")["message"] == "Empty subnet pool prefix list."
    body = err(create(prefixes=["10.0.0.0/8", "2001:db8::/32"]), 400, "PrefixVersionMismatch")
    assert body["message"] == "Cannot mix IPv4 and IPv6 prefixes in a subnet pool."
    body = err(
        create(prefixes=["10.0.0.0/8"], min_prefixlen=28, max_prefixlen=24), 400, "IllegalSubnetPoolPrefixBounds"
    )
    assert body["message"] == "Illegal prefix bounds: min_prefixlen=28, max_prefixlen=24."
    made = pool(api, ["10.11.12.0/24"])
    body = err(
        api.put(f"/v2.0/subnetpools/{made['id']}", json={"subnetpool": {"prefixes": ["10.11.12.0/26"]}}),
        400,
        "IllegalSubnetPoolPrefixUpdate",
    )
    assert body["message"] == "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes."
    err(api.put(f"/v2.0/subnetpools/{made['id']}", json={"subnetpool": {"shared": True}}), 400, "HTTPBadRequest")


def test_add_and_remove_prefixes(api):
    made = pool(api, ["192.168.1.0/24", "10.10.10.0/24"], min_prefixlen=16)
    added = ok(api.put(f"/v2.0/subnetpools/{made['id']}/add_prefixes", json={"prefixes": ["192.168.2.0/24"]}))
    assert added == {"prefixes": ["10.10.10.0/24", "192.168.1.0/24", "192.168.2.0/24"]}
    # Overlapping and adjacent prefixes are merged.
    added = ok(
        api.put(f"/v2.0/subnetpools/{made['id']}/add_prefixes", json={"prefixes": ["10.10.0.0/16", "192.168.0.0/24"]})
    )
    assert added == {"prefixes": ["10.10.0.0/16", "192.168.0.0/23", "192.168.2.0/24"]}
    shown = ok(api.get(f"/v2.0/subnetpools/{made['id']}"))["subnetpool"]
    assert shown["prefixes"] == added["prefixes"] and shown["revision_number"] == made["revision_number"] + 2
    # Removing part of a prefix splits it; removing space the pool does not have changes nothing.
    removed = ok(api.put(f"/v2.0/subnetpools/{made['id']}/remove_prefixes", json={"prefixes": ["192.168.0.0/24"]}))
    assert removed == {"prefixes": ["10.10.0.0/16", "192.168.1.0/24", "192.168.2.0/24"]}
    same = ok(api.put(f"/v2.0/subnetpools/{made['id']}/remove_prefixes", json={"prefixes": ["172.16.0.0/12"]}))
    assert same == removed


def test_removed_space_is_no_longer_handed_out(api):
    made = pool(api, ["10.20.0.0/22"], default_prefixlen=24)
    net = mk(api, "network", name="n")
    first = mk(api, "subnet", network_id=net["id"], ip_version=4, subnetpool_id=made["id"])
    assert first["cidr"] == "10.20.0.0/24"
    body = err(
        api.put(f"/v2.0/subnetpools/{made['id']}/remove_prefixes", json={"prefixes": ["10.20.0.0/23"]}),
        400,
        "IllegalSubnetPoolPrefixUpdate",
    )
    assert (
        body["message"] == "Illegal update to prefixes: One or more the prefixes to be removed is in use by a subnet."
    )
    ok(api.put(f"/v2.0/subnetpools/{made['id']}/remove_prefixes", json={"prefixes": ["10.20.1.0/24", "10.20.3.0/24"]}))
    second = mk(api, "subnet", network_id=net["id"], ip_version=4, subnetpool_id=made["id"])
    assert second["cidr"] == "10.20.2.0/24"
    body = subnet_body(net["id"], ip_version=4, subnetpool_id=made["id"])
    err(api.post("/v2.0/subnets", json=body), 409, "SubnetAllocationError")
    err(api.post("/v2.0/subnets", json=subnet_body(net["id"], subnetpool_id=made["id"], cidr="10.20.1.0/24")), 409)


def test_prefix_operation_bad_requests(api):
    made = pool(api, ["10.0.0.0/16"])
    path = f"/v2.0/subnetpools/{made['id']}"
    for body in ([], {}, {"prefixes": []}, {"prefixes": "10.1.0.0/16"}, {"other": 1}):
        assert err(api.put(f"{path}/add_prefixes", json=body), 400, "HTTPBadRequest")["message"] == (
            "Request body contains invalid data"
        )
        err(api.put(f"{path}/remove_prefixes", json=body), 400, "HTTPBadRequest")
    err(api.put(f"{path}/add_prefixes", json={"prefixes": ["not-a-cidr"]}), 400)
    err(api.put(f"{path}/add_prefixes", json={"prefixes": ["2001:db8::/32"]}), 400, "PrefixVersionMismatch")
    err(api.put("/v2.0/subnetpools/nope/add_prefixes", json={"prefixes": ["10.1.0.0/16"]}), 404, "SubnetPoolNotFound")
    assert err(api.get(f"{path}/add_prefixes"), 405)


def test_one_default_pool_per_ip_version(api):
    v4 = pool(api, ["10.0.0.0/8"], is_default=True, default_prefixlen=24)
    assert v4["is_default"] is True
    pool(api, ["2001:db8::/32"], is_default=True, default_prefixlen=64)  # the IPv6 default
    body = err(
        api.post(
            "/v2.0/subnetpools", json={"subnetpool": {"name": "x", "prefixes": ["172.16.0.0/12"], "is_default": True}}
        ),
        400,
        "InvalidInput",
    )
    assert body["message"] == (
        "Invalid input for operation: A default subnetpool for this IP family has already been set. Only one "
        "default may exist per IP family."
    )
    other = pool(api, ["172.16.0.0/12"])
    err(api.put(f"/v2.0/subnetpools/{other['id']}", json={"subnetpool": {"is_default": True}}), 400, "InvalidInput")
    # Setting true again on the default itself is no second default.
    ok(api.put(f"/v2.0/subnetpools/{v4['id']}", json={"subnetpool": {"is_default": True}}))
    ok(api.put(f"/v2.0/subnetpools/{v4['id']}", json={"subnetpool": {"is_default": False}}))
    moved = ok(api.put(f"/v2.0/subnetpools/{other['id']}", json={"subnetpool": {"is_default": True}}))
    assert moved["subnetpool"]["is_default"] is True
    assert [p["id"] for p in ok(api.get("/v2.0/subnetpools?is_default=true&ip_version=4"))["subnetpools"]] == [
        other["id"]
    ]


def test_use_default_subnetpool(api):
    net = mk(api, "network", name="n")
    body = err(
        api.post("/v2.0/subnets", json=subnet_body(net["id"], ip_version=4, use_default_subnetpool=True)),
        400,
        "BadRequest",
    )
    assert body["message"] == "Bad subnets request: No default subnetpool found for IPv4."
    default = pool(api, ["10.0.0.0/8"], is_default=True, default_prefixlen=24)
    made = mk(api, "subnet", network_id=net["id"], ip_version=4, use_default_subnetpool=True)
    assert (made["subnetpool_id"], made["cidr"]) == (default["id"], "10.0.0.0/24")
    assert "use_default_subnetpool" not in made
    sized = mk(api, "subnet", network_id=net["id"], ip_version=4, use_default_subnetpool=True, prefixlen=26)
    assert sized["cidr"] == "10.0.1.0/26"
    body = err(
        api.post(
            "/v2.0/subnets", json=subnet_body(net["id"], use_default_subnetpool=True, subnetpool_id=default["id"])
        ),
        400,
        "BadRequest",
    )
    assert body["message"] == "Bad subnets request: subnetpool_id and use_default_subnetpool cannot both be specified."
    body = err(api.post("/v2.0/subnets", json=subnet_body(net["id"], use_default_subnetpool=True)), 400, "BadRequest")
    assert body["message"] == (
        "Bad subnets request: ip_version must be specified in the absence of cidr and subnetpool_id."
    )
    body = err(api.post("/v2.0/subnets", json=subnet_body(net["id"], ip_version=4)), 400, "BadRequest")
    assert body["message"] == "Bad subnets request: a subnetpool must be specified in the absence of a cidr."


def test_subnets_of_a_network_come_from_one_pool(api):
    net = mk(api, "network", name="n")
    plain = mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.10.10.0/24")
    pooled = pool(api, ["192.168.0.0/16"], min_prefixlen="29")
    body = err(
        api.post("/v2.0/subnets", json=subnet_body(net["id"], ip_version=4, subnetpool_id=pooled["id"])),
        400,
        "NetworkSubnetPoolAffinityError",
    )
    assert body["message"] == "Subnets hosted on the same network must be allocated from the same subnet pool."
    # The rule is per IP version: an IPv6 subnet from a pool may join IPv4 subnets from none.
    v6 = pool(api, ["2001:db8::/48"], default_prefixlen=64)
    mk(api, "subnet", network_id=net["id"], ip_version=6, subnetpool_id=v6["id"])
    # And the reverse: a subnet from no pool on a network whose subnets of that version come from one.
    other = mk(api, "network", name="m")
    mk(api, "subnet", network_id=other["id"], ip_version=4, subnetpool_id=pooled["id"])
    err(
        api.post("/v2.0/subnets", json=subnet_body(other["id"], ip_version=4, cidr="10.9.0.0/24")),
        400,
        "NetworkSubnetPoolAffinityError",
    )
    second = pool(api, ["172.16.0.0/16"], default_prefixlen=24)
    err(
        api.post("/v2.0/subnets", json=subnet_body(other["id"], ip_version=4, subnetpool_id=second["id"])),
        400,
        "NetworkSubnetPoolAffinityError",
    )
    assert api.delete(f"/v2.0/subnets/{plain['id']}").status_code == 204
    mk(api, "subnet", network_id=net["id"], ip_version=4, subnetpool_id=pooled["id"])
