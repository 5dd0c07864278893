"""Extensions standard-attr-tag, tag-creation and tag-ports-during-bulk-creation over HTTP."""

from __future__ import annotations

import pytest

from tests.api.wire import err, mk, ok

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def resource(api, plural):  # type: ignore[no-untyped-def]
    if plural == "networks":
        return mk(api, "network", name="n")
    if plural == "subnetpools":
        return mk(api, "subnetpool", name="p", prefixes=["10.0.0.0/8"], default_prefixlen=24)
    net = mk(api, "network", name="n")
    if plural == "subnets":
        return mk(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.0.0.0/24")
    return mk(api, "port", network_id=net["id"])


@pytest.mark.parametrize("plural", ["networks", "subnets", "ports", "subnetpools"])
def test_tag_operations(api, plural):
    """Neutron's own tag test sequence, with each status code and body."""
    rid = resource(api, plural)["id"]
    base = f"/v2.0/{plural}/{rid}/tags"

    def tags():  # type: ignore[no-untyped-def]
        return sorted(ok(api.get(base))["tags"])

    assert ok(api.put(base, json={"tags": ["red", "blue"]})) == {"tags": ["red", "blue"]}
    assert tags() == ["blue", "red"]
    for tag in ("green", "red", "black.or.white"):  # the second red: idempotent
        r = api.put(f"{base}/{tag}")
        assert (r.status_code, r.content) == (201, b"")
    assert tags() == ["black.or.white", "blue", "green", "red"]
    assert ok(api.put(base, json={"tags": ["red", "yellow", "purple"]}))["tags"] == ["red", "yellow", "purple"]
    assert tags() == ["purple", "red", "yellow"]
    r = api.get(f"{base}/red")
    assert (r.status_code, r.content) == (204, b"")
    assert err(api.get(f"{base}/green"), 404, "TagNotFound")["message"] == "Tag green could not be found."
    assert api.delete(f"{base}/red").status_code == 204
    assert tags() == ["purple", "yellow"]
    err(api.delete(f"{base}/green"), 404, "TagNotFound")
    # tag-creation: POST adds, keeping what is there, and answers with the request body.
    assert ok(api.post(base, json={"tags": ["yellow", "orange"]})) == {"tags": ["yellow", "orange"]}
    assert tags() == ["orange", "purple", "yellow"]
    assert api.delete(base).status_code == 204
    assert tags() == []
    shown = ok(api.get(f"/v2.0/{plural}/{rid}"))[plural[:-1]]
    assert shown["tags"] == [] and shown["revision_number"] >= 6  # every change of the set is a revision


def test_tag_changes_are_revisions(api):
    net = mk(api, "network", name="n")
    base = f"/v2.0/networks/{net['id']}"

    def revision():  # type: ignore[no-untyped-def]
        return ok(api.get(base))["network"]["revision_number"]

    api.put(f"{base}/tags/a")
    assert revision() == 1
    api.put(f"{base}/tags/a")  # no change, no revision
    ok(api.put(f"{base}/tags", json={"tags": ["a"]}))
    assert revision() == 1
    api.delete(f"{base}/tags")
    assert revision() == 2


def test_tag_limits_and_bad_bodies(api):
    net = mk(api, "network", name="n")
    base = f"/v2.0/networks/{net['id']}/tags"
    # Neutron's current limits: 255 characters a tag (its API reference's 60 is the retired "tag"
    # extension's), 50 tags a resource.
    assert api.put(f"{base}/{'t' * 255}").status_code == 201
    body = err(api.put(f"{base}/{'t' * 256}"), 400, "InvalidInput")
    assert (
        body["message"].startswith("Invalid input for operation: ")
        and "exceeds maximum length of 255" in body["message"]
    )
    err(api.put(base, json={"tags": ["x" * 256]}), 400, "InvalidInput")
    many = [f"t{i}" for i in range(50)]
    ok(api.put(base, json={"tags": many}))
    body = err(api.put(f"{base}/one-more"), 400, "BadRequest")
    assert body["message"] == "Bad networks request: The number of tags exceed the per-resource limit of 50."
    err(api.post(base, json={"tags": ["one-more"]}), 400, "BadRequest")
    err(api.put(base, json={"tags": [*many, "one-more"]}), 400, "BadRequest")
    assert len(ok(api.get(base))["tags"]) == 50
    for bad in ({"tag": ["a"]}, ["a"], {"tags": "a"}, {"tags": [1]}):
        err(api.put(base, json=bad), 400, "InvalidInput")
    body = err(api.put(base, json={"tags": ["red", "red"]}), 400, "InvalidInput")
    assert body["message"] == "Invalid input for operation: Duplicate items in the list: 'red'."
    # An unknown resource: 404 of that resource.
    err(api.put("/v2.0/networks/00000000-0000-0000-0000-000000000000/tags/a"), 404, "NetworkNotFound")


def test_tags_in_create_bodies_ports_only(api):
    body = err(api.post("/v2.0/networks", json={"network": {"name": "n", "tags": ["a"]}}), 400, "HTTPBadRequest")
    assert body["message"] == "Attribute 'tags' not allowed in POST"
    net = mk(api, "network", name="n")
    body = err(api.put(f"/v2.0/networks/{net['id']}", json={"network": {"tags": ["a"]}}), 400, "HTTPBadRequest")
    assert body["message"] == "Cannot update read-only attribute tags"
    port = mk(api, "port", network_id=net["id"], tags=["blue", "red"])
    assert sorted(port["tags"]) == ["blue", "red"]
    err(api.put(f"/v2.0/ports/{port['id']}", json={"port": {"tags": ["a"]}}), 400, "HTTPBadRequest")
    # Bulk port creation with tags (tag-ports-during-bulk-creation), each port its own.
    made = ok(
        api.post(
            "/v2.0/ports",
            json={"ports": [{"network_id": net["id"], "tags": ["a"]}, {"network_id": net["id"], "tags": ["b", "c"]}]},
        ),
        201,
    )["ports"]
    assert [sorted(p["tags"]) for p in made] == [["a"], ["b", "c"]]
    assert [p["id"] for p in ok(api.get("/v2.0/ports?tags=b"))["ports"]] == [made[1]["id"]]
    err(api.post("/v2.0/ports", json={"port": {"network_id": net["id"], "tags": ["a", "a"]}}), 400, "HTTPBadRequest")
    err(
        api.post("/v2.0/ports", json={"port": {"network_id": net["id"], "tags": [f"t{i}" for i in range(51)]}}),
        400,
        "HTTPBadRequest",
    )


def test_tag_filters(api):
    """Neutron's filter semantics: tags (all), tags-any, not-tags (not all), not-tags-any."""
    ids = {}
    for name, tags in (
        ("r1", ["red"]),
        ("r2", ["red", "blue"]),
        ("r3", ["red", "blue", "green"]),
        ("r4", ["green"]),
        ("r5", []),
    ):
        ids[name] = mk(api, "network", name=name)["id"]
        if tags:
            ok(api.put(f"/v2.0/networks/{ids[name]}/tags", json={"tags": tags}))

    def names(query):  # type: ignore[no-untyped-def]
        return sorted(n["name"] for n in ok(api.get(f"/v2.0/networks?{query}"))["networks"])

    assert names("tags=red") == ["r1", "r2", "r3"]
    assert names("tags=red,blue") == ["r2", "r3"]
    assert names("tags-any=red,blue") == ["r1", "r2", "r3"]
    assert names("not-tags=red,blue") == ["r1", "r4", "r5"]
    assert names("not-tags-any=blue") == ["r1", "r4", "r5"]
    assert names("not-tags-any=red,blue") == ["r4", "r5"]
