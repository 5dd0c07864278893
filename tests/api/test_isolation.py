"""Project isolation with a token mapping: a project sees and changes only its own resources."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from tests.api.wire import err, ok
from tests.server import Server

TOKENS = {"tok-a": "proj-a", "tok-b": "proj-b"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path_factory.mktemp('iso')}/iso.db"
    db = Database(load_settings(database_url=url, ipam_driver="internal"))
    upgrade_database(db.engine, "internal")
    db.dispose()
    srv = Server(
        url,
        "internal",
        tmp_path_factory.mktemp("isolog") / "serve.log",
        api_token="admin-tok",
        project_tokens=json.dumps(TOKENS),
    )
    yield srv
    srv.stop()


def client(server: Server, token: str | None) -> httpx.Client:
    headers = {"X-Auth-Token": token} if token else {}
    return httpx.Client(base_url=server.base, headers=headers, timeout=30)


def test_token_required(guarded):
    with client(guarded, None) as anon, client(guarded, "wrong") as bad:
        err(anon.get("/v2.0/networks"), 401)
        err(bad.post("/v2.0/networks", json={"network": {"name": "x"}}), 401)


def test_projects_are_isolated(guarded):
    with client(guarded, "tok-a") as a, client(guarded, "tok-b") as b, client(guarded, "admin-tok") as admin:
        net = ok(a.post("/v2.0/networks", json={"network": {"name": "a-private"}}), 201)["network"]
        assert net["project_id"] == "proj-a"
        sub = ok(
            a.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}}),
            201,
        )["subnet"]
        port = ok(a.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 201)["port"]

        assert net["id"] not in [n["id"] for n in ok(b.get("/v2.0/networks"))["networks"]]
        for path in (
            f"/v2.0/networks/{net['id']}",
            f"/v2.0/subnets/{sub['id']}",
            f"/v2.0/ports/{port['id']}",
            f"/v2.0/network-ip-availabilities/{net['id']}",
        ):
            err(b.get(path), 404)
        err(b.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "stolen"}}), 404)
        err(b.delete(f"/v2.0/ports/{port['id']}"), 404)
        err(b.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 404)
        err(
            b.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.1.0.0/24"}}),
            404,
        )
        err(
            b.post("/v2.0/networks", json={"network": {"name": "x", "project_id": "proj-a"}}),
            400,
            "HTTPBadRequest",
        )
        assert ok(b.get("/v2.0/network-ip-availabilities"))["network_ip_availabilities"] == []
        assert ok(a.get(f"/v2.0/ports/{port['id']}"))["port"]["name"] == ""

        # The admin token sees everything.
        assert net["id"] in [n["id"] for n in ok(admin.get("/v2.0/networks"))["networks"]]


def test_shared_network_readable_not_writable(guarded):
    with client(guarded, "tok-a") as a, client(guarded, "tok-b") as b, client(guarded, "admin-tok") as admin:
        # Only an admin shares a network (Neutron's policy); a project asking for it gets 403.
        err(a.post("/v2.0/networks", json={"network": {"name": "no", "shared": True}}), 403, "PolicyNotAuthorized")
        body = {"network": {"name": "a-shared", "shared": True, "project_id": "proj-a"}}
        net = ok(admin.post("/v2.0/networks", json=body), 201)["network"]
        ok(
            a.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.9.0.0/24"}}),
            201,
        )
        assert ok(b.get(f"/v2.0/networks/{net['id']}"))["network"]["shared"] is True
        assert net["id"] in [n["id"] for n in ok(b.get("/v2.0/networks"))["networks"]]
        err(b.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "mine"}}), 404)
        err(b.delete(f"/v2.0/networks/{net['id']}"), 404)
        # Another project may attach its own port to a shared network, as in Neutron.
        port = ok(b.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 201)["port"]
        assert port["project_id"] == "proj-b" and port["fixed_ips"]
        err(a.get(f"/v2.0/ports/{port['id']}"), 404)
