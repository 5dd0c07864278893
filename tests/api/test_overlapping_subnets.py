"""Subnets of different networks may overlap, as in Neutron (allow_overlapping_ips): each network may hold
the same address, and one's changes leave the other's addresses alone.

The Nautobot driver keeps every subnet in one namespace, where Nautobot holds one ip-address per host
whatever prefix it is filed under: it refuses overlapping subnets as Neutron does with overlapping IPs off."""

from __future__ import annotations

import httpx

from tests.api.wire import err, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def nested(api: httpx.Client, api_backend: str) -> tuple[dict, dict, dict, dict] | None:
    """Networks outer and inner with subnets 10.0.0.0/16 and 10.0.1.0/24; None where refused (Nautobot)."""
    outer_net, inner_net = mk(api, "network", name="outer"), mk(api, "network", name="inner")
    outer = mk(api, "subnet", network_id=outer_net["id"], ip_version=4, cidr="10.0.0.0/16")
    body = {"network_id": inner_net["id"], "ip_version": 4, "cidr": "10.0.1.0/24"}
    if api_backend == "nautobot":
        refused = err(api.post("/v2.0/subnets", json={"subnet": body}), 400, "InvalidInput")
        assert refused["message"] == (
            f"Invalid input for operation: Requested subnet with cidr: 10.0.1.0/24 for network: {inner_net['id']} "
            "overlaps with another subnet."
        )
        # ... and the other way round; nothing was left behind (the api fixture verifies Nautobot).
        body = {"network_id": inner_net["id"], "ip_version": 4, "cidr": "10.0.0.0/8"}
        err(api.post("/v2.0/subnets", json={"subnet": body}), 400, "InvalidInput")
        assert [s["id"] for s in ok(api.get("/v2.0/subnets"))["subnets"]] == [outer["id"]]
        return None
    return outer_net, outer, inner_net, mk(api, "subnet", **body)


def test_deleting_a_nested_subnet_keeps_the_outer_subnets_addresses(api, api_backend):
    made = nested(api, api_backend)
    if made is None:
        return
    outer_net, outer, _, inner = made
    fixed = [{"subnet_id": outer["id"], "ip_address": "10.0.1.5"}]
    port = mk(api, "port", network_id=outer_net["id"], fixed_ips=fixed)
    assert api.delete(f"/v2.0/subnets/{inner['id']}").status_code == 204
    err(api.post("/v2.0/ports", json={"port": {"network_id": outer_net["id"], "fixed_ips": fixed}}), 409)
    assert ok(api.get(f"/v2.0/ports/{port['id']}"))["port"]["fixed_ips"] == fixed


def test_the_same_address_in_overlapping_subnets_is_two_addresses(api, api_backend):
    made = nested(api, api_backend)
    if made is None:
        return
    outer_net, outer, inner_net, inner = made
    in_outer = [{"subnet_id": outer["id"], "ip_address": "10.0.1.5"}]
    in_inner = [{"subnet_id": inner["id"], "ip_address": "10.0.1.5"}]
    outer_port = mk(api, "port", network_id=outer_net["id"], fixed_ips=in_outer)
    inner_port = mk(api, "port", network_id=inner_net["id"], fixed_ips=in_inner)
    assert api.delete(f"/v2.0/ports/{inner_port['id']}").status_code == 204
    err(api.post("/v2.0/ports", json={"port": {"network_id": outer_net["id"], "fixed_ips": in_outer}}), 409)
    assert ok(api.get(f"/v2.0/ports/{outer_port['id']}"))["port"]["fixed_ips"] == in_outer
    mk(api, "port", network_id=inner_net["id"], fixed_ips=in_inner)
