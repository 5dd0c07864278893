"""Project isolation, driven as an attacker would: two project tokens (a attacks, b is the victim), the
owner of a shared network (ops) and the admin token, against a real ``pipam serve`` on SQLite and
PostgreSQL. Each test is one item of issue 16; the rules are the table in docs/security.md.
"""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.databases import reset
from tests.api.wire import err, ok
from tests.databases import fresh_url
from tests.server import Server

T = TypeVar("T")
TOKENS = {"tok-a": "proj-a", "tok-b": "proj-b", "tok-ops": "proj-ops"}
ADMIN_TOKEN = "admin-tok"
COLLECTIONS = ("networks", "subnets", "ports", "subnetpools", "network-ip-availabilities")


@dataclass
class Guarded:
    server: Server
    url: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    url = fresh_url(request.param, str(tmp_path_factory.mktemp("iso")), "iso")
    db = Database(load_settings(database_url=url, ipam_driver="internal"))
    upgrade_database(db.engine, "internal")
    db.dispose()
    srv = Server(
        url,
        "internal",
        tmp_path_factory.mktemp("isolog") / "serve.log",
        api_token=ADMIN_TOKEN,
        project_tokens=json.dumps(TOKENS),
        log_level="INFO",
    )
    yield Guarded(srv, url)
    srv.stop()


def client(server: Server, token: str | None, **headers: str) -> httpx.Client:
    if token:
        headers["X-Auth-Token"] = token
    return httpx.Client(base_url=server.base, headers=headers, timeout=60)


@dataclass
class Scene:
    """What exists before the attack: ops owns a shared network (made shared by the admin), b owns a
    private network, subnet, pool and ports (one on the shared network), a owns a private network."""

    a: httpx.Client
    b: httpx.Client
    ops: httpx.Client
    admin: httpx.Client
    shared_net: dict[str, Any]
    shared_subnet: dict[str, Any]
    b_net: dict[str, Any]
    b_subnet: dict[str, Any]
    b_port: dict[str, Any]
    b_port_on_shared: dict[str, Any]
    b_pool: dict[str, Any]
    a_net: dict[str, Any]
    a_subnet: dict[str, Any]


def make(c: httpx.Client, singular: str, status: int = 201, **body: Any) -> dict[str, Any]:
    return ok(c.post(f"/v2.0/{singular}s", json={singular: body}), status)[singular]  # type: ignore[no-any-return]


@contextmanager
def staged(srv: Server) -> Iterator[Scene]:
    """The scene, made through the API on a running server."""
    with (
        client(srv, "tok-a") as a,
        client(srv, "tok-b") as b,
        client(srv, "tok-ops") as ops,
        client(srv, ADMIN_TOKEN) as admin,
    ):
        shared_net = make(admin, "network", name="ops-shared", shared=True, project_id="proj-ops")
        shared_subnet = make(ops, "subnet", network_id=shared_net["id"], ip_version=4, cidr="10.99.0.0/24")
        b_net = make(b, "network", name="b-private")
        b_subnet = make(b, "subnet", network_id=b_net["id"], ip_version=4, cidr="10.20.0.0/24", name="b-sub")
        b_port = make(b, "port", network_id=b_net["id"], name="b-port", device_id="b-vm")
        b_port_on_shared = make(b, "port", network_id=shared_net["id"], name="b-on-shared")
        b_pool = make(b, "subnetpool", name="b-pool", prefixes=["172.16.0.0/12"], default_prefixlen=24)
        a_net = make(a, "network", name="a-private")
        a_subnet = make(a, "subnet", network_id=a_net["id"], ip_version=4, cidr="10.10.0.0/24")
        yield Scene(
            a,
            b,
            ops,
            admin,
            shared_net,
            shared_subnet,
            b_net,
            b_subnet,
            b_port,
            b_port_on_shared,
            b_pool,
            a_net,
            a_subnet,
        )


@pytest.fixture
def scene(guarded: Guarded) -> Iterator[Scene]:
    db = Database(load_settings(database_url=guarded.url, ipam_driver="internal"))
    reset(db.engine, "internal")
    db.dispose()
    with staged(guarded.server) as made:
        yield made


def same_as_unknown(hidden: httpx.Response, unknown: httpx.Response, hidden_id: str, unknown_id: str) -> None:
    """A hidden row answers exactly as an id that never existed: status, type and message."""
    assert hidden.status_code == unknown.status_code, (hidden.text, unknown.text)
    assert hidden.text.replace(hidden_id, "ID") == unknown.text.replace(unknown_id, "ID")


# --- the basics -------------------------------------------------------------------------------------


def test_token_required(guarded):
    with client(guarded.server, None) as anon, client(guarded.server, "wrong") as bad:
        err(anon.get("/v2.0/networks"), 401)
        err(bad.post("/v2.0/networks", json={"network": {"name": "x"}}), 401)


def test_private_resources_are_unknown_to_other_projects(scene):
    a, b = scene.a, scene.b
    unknown = str(uuid.uuid4())
    for collection, hidden in (
        ("networks", scene.b_net["id"]),
        ("subnets", scene.b_subnet["id"]),
        ("ports", scene.b_port["id"]),
        ("subnetpools", scene.b_pool["id"]),
    ):
        assert hidden not in [x["id"] for x in ok(a.get(f"/v2.0/{collection}"))[collection]]
        for method, body in (("GET", None), ("PUT", {collection[:-1]: {"name": "stolen"}}), ("DELETE", None)):
            same_as_unknown(
                a.request(method, f"/v2.0/{collection}/{hidden}", json=body),
                a.request(method, f"/v2.0/{collection}/{unknown}", json=body),
                hidden,
                unknown,
            )
        same_as_unknown(
            a.get(f"/v2.0/{collection}/{hidden}/tags"), a.get(f"/v2.0/{collection}/{unknown}/tags"), hidden, unknown
        )
    same_as_unknown(
        a.post("/v2.0/ports", json={"port": {"network_id": scene.b_net["id"]}}),
        a.post("/v2.0/ports", json={"port": {"network_id": unknown}}),
        scene.b_net["id"],
        unknown,
    )
    # b still has everything, unchanged.
    assert ok(b.get(f"/v2.0/networks/{scene.b_net['id']}"))["network"]["name"] == "b-private"
    assert ok(b.get(f"/v2.0/ports/{scene.b_port['id']}"))["port"]["name"] == "b-port"
    # Naming another project in a body is 400 (Neutron's message), not a way in.
    err(a.post("/v2.0/networks", json={"network": {"name": "x", "project_id": "proj-b"}}), 400, "HTTPBadRequest")
    assert scene.b_net["id"] in [n["id"] for n in ok(scene.admin.get("/v2.0/networks"))["networks"]]


# --- 1. subnets on a network: its owner (or the admin) only ------------------------------------------


def test_subnet_on_a_shared_network_needs_its_owner(scene):
    a, b, ops, admin = scene.a, scene.b, scene.ops, scene.admin
    net = scene.shared_net["id"]
    slaac = {"network_id": net, "ip_version": 6, "cidr": "2001:db8:99::/64", "ipv6_address_mode": "slaac"}
    body = err(a.post("/v2.0/subnets", json={"subnet": slaac}), 403, "PolicyNotAuthorized")
    assert "create_subnet" in body["message"]
    # Nothing happened to b's port on that network: no address in a subnet a chose.
    assert len(ok(b.get(f"/v2.0/ports/{scene.b_port_on_shared['id']}"))["port"]["fixed_ips"]) == 1
    assert [s["id"] for s in ok(admin.get(f"/v2.0/subnets?network_id={net}"))["subnets"]] == [scene.shared_subnet["id"]]
    # A private network of another project is unknown, as an id that never existed.
    unknown = str(uuid.uuid4())
    v4 = {"ip_version": 4, "cidr": "10.50.0.0/24"}
    same_as_unknown(
        a.post("/v2.0/subnets", json={"subnet": {"network_id": scene.b_net["id"], **v4}}),
        a.post("/v2.0/subnets", json={"subnet": {"network_id": unknown, **v4}}),
        scene.b_net["id"],
        unknown,
    )
    # Its subnets are readable (Neutron's rule:shared) but not a's to change.
    sid = scene.shared_subnet["id"]
    assert ok(a.get(f"/v2.0/subnets/{sid}"))["subnet"]["cidr"] == "10.99.0.0/24"
    err(a.put(f"/v2.0/subnets/{sid}", json={"subnet": {"dns_nameservers": ["6.6.6.6"]}}), 403, "PolicyNotAuthorized")
    err(a.delete(f"/v2.0/subnets/{sid}"), 403, "PolicyNotAuthorized")
    err(a.put(f"/v2.0/subnets/{sid}/tags/mine"), 403, "PolicyNotAuthorized")
    err(a.put(f"/v2.0/networks/{net}", json={"network": {"name": "mine"}}), 403, "PolicyNotAuthorized")
    err(a.delete(f"/v2.0/networks/{net}"), 403, "PolicyNotAuthorized")
    # A bulk create holding one such subnet creates nothing.
    mine = {"network_id": scene.a_net["id"], "ip_version": 6, "cidr": "2001:db8:a::/64"}
    err(a.post("/v2.0/subnets", json={"subnets": [mine, slaac]}), 403, "PolicyNotAuthorized")
    assert len(ok(a.get(f"/v2.0/subnets?network_id={scene.a_net['id']}"))["subnets"]) == 1
    # The network's owner and the admin may.
    make(ops, "subnet", **slaac)
    make(admin, "subnet", network_id=net, ip_version=4, cidr="10.98.0.0/24")


# --- 2. network device owners, chosen addresses and MACs on another project's network --------------


def test_router_ports_and_chosen_addresses_on_a_foreign_network(scene):
    a, ops = scene.a, scene.ops
    net, sid = scene.shared_net["id"], scene.shared_subnet["id"]
    gateway = scene.shared_subnet["gateway_ip"]
    attempts = [
        {"device_owner": "network:router_interface", "fixed_ips": [{"ip_address": gateway}]},
        {"device_owner": "network:router_interface", "fixed_ips": [{"subnet_id": sid, "ip_address": gateway}]},
        {"device_owner": "network:dhcp"},
        {"fixed_ips": [{"ip_address": "10.99.0.50"}]},
        {"fixed_ips": [{"subnet_id": sid, "ip_address": "10.99.0.50"}]},
        {"mac_address": scene.b_port_on_shared["mac_address"]},
    ]
    for attempt in attempts:
        err(a.post("/v2.0/ports", json={"port": {"network_id": net, **attempt}}), 403, "PolicyNotAuthorized")
    # An address from a named subnet of the shared network is what a may ask for.
    port = make(a, "port", network_id=net, fixed_ips=[{"subnet_id": sid}])
    assert port["fixed_ips"][0]["subnet_id"] == sid and port["fixed_ips"][0]["ip_address"] != gateway
    # Nor may a turn its port into a network device, or pick its addresses there.
    err(
        a.put(f"/v2.0/ports/{port['id']}", json={"port": {"device_owner": "network:router_gateway"}}),
        403,
        "PolicyNotAuthorized",
    )
    err(
        a.put(f"/v2.0/ports/{port['id']}", json={"port": {"fixed_ips": [{"ip_address": gateway}]}}),
        403,
        "PolicyNotAuthorized",
    )
    ok(a.put(f"/v2.0/ports/{port['id']}", json={"port": {"device_owner": "compute:nova", "name": "vm"}}))
    # The owner's router still gets its gateway.
    router = make(
        ops, "port", network_id=net, device_owner="network:router_interface", fixed_ips=[{"ip_address": gateway}]
    )
    assert router["fixed_ips"] == [{"subnet_id": sid, "ip_address": gateway}]
    # On its own network a may do all of it.
    own = scene.a_subnet
    make(a, "port", network_id=scene.a_net["id"], device_owner="network:router_interface",
         fixed_ips=[{"ip_address": own["gateway_ip"]}])  # fmt: skip


def test_network_owner_may_delete_ports_on_its_network(scene):
    ops, b = scene.ops, scene.b
    pid = scene.b_port_on_shared["id"]
    err(ops.get(f"/v2.0/ports/{pid}"), 404)  # not readable ...
    err(ops.put(f"/v2.0/ports/{pid}", json={"port": {"name": "x"}}), 404)  # ... nor changeable ...
    ok(ops.delete(f"/v2.0/ports/{pid}"), 204)  # ... but removable from its network (Neutron's delete_port)
    err(b.get(f"/v2.0/ports/{pid}"), 404)
    # Not so on a network it does not own.
    err(ops.delete(f"/v2.0/ports/{scene.b_port['id']}"), 404)


# --- 3. markers -----------------------------------------------------------------------------------


def test_markers_of_hidden_rows_behave_as_unknown_ids(scene):
    a = scene.a
    unknown = str(uuid.uuid4())
    hidden = {
        "networks": scene.b_net["id"],
        "subnets": scene.b_subnet["id"],
        "ports": scene.b_port["id"],
        "subnetpools": scene.b_pool["id"],
        "network-ip-availabilities": scene.b_net["id"],
    }
    for collection, hidden_id in hidden.items():
        for extra in ("", "&sort_key=name&sort_dir=asc", "&sort_key=name&sort_dir=desc&page_reverse=True"):
            same_as_unknown(
                a.get(f"/v2.0/{collection}?limit=1&marker={hidden_id}{extra}"),
                a.get(f"/v2.0/{collection}?limit=1&marker={unknown}{extra}"),
                hidden_id,
                unknown,
            )
    # The attack the old marker allowed: probing a hidden row's name by sorting around it. a renames
    # a probe row and asks for the row after b's; every answer is the same refusal.
    probe = scene.a_net["id"]
    answers = set()
    for guess in ("a", "b-private", "c"):
        ok(a.put(f"/v2.0/networks/{probe}", json={"network": {"name": guess}}))
        resp = a.get(f"/v2.0/networks?sort_key=name&limit=1&marker={scene.b_net['id']}")
        answers.add((resp.status_code, resp.text))
    assert len(answers) == 1 and next(iter(answers))[0] == 404
    # A marker a may see works.
    ok(a.get(f"/v2.0/networks?limit=1&marker={scene.shared_net['id']}"))


# --- 5. sharing is the admin's ----------------------------------------------------------------------


def test_only_the_admin_shares(scene):
    a, b, admin = scene.a, scene.b, scene.admin
    err(a.post("/v2.0/networks", json={"network": {"name": "n", "shared": True}}), 403, "PolicyNotAuthorized")
    for extra in ({"shared": True}, {"is_default": True}):
        body = {"subnetpool": {"name": "p", "prefixes": ["192.168.0.0/16"], **extra}}
        err(a.post("/v2.0/subnetpools", json=body), 403, "PolicyNotAuthorized")
    err(a.put(f"/v2.0/networks/{scene.a_net['id']}", json={"network": {"shared": True}}), 403, "PolicyNotAuthorized")
    assert scene.a_net["id"] not in [n["id"] for n in ok(b.get("/v2.0/networks"))["networks"]]
    # A network the admin shared for a: a cannot take it back from under b.
    net = make(admin, "network", name="a-shared", shared=True, project_id="proj-a")
    make(a, "subnet", network_id=net["id"], ip_version=4, cidr="10.60.0.0/24")
    b_port = make(b, "port", network_id=net["id"])
    err(a.put(f"/v2.0/networks/{net['id']}", json={"network": {"shared": False}}), 403, "PolicyNotAuthorized")
    err(a.delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")
    assert ok(b.get(f"/v2.0/ports/{b_port['id']}"))["port"]["fixed_ips"]
    assert ok(b.get(f"/v2.0/networks/{net['id']}"))["network"]["shared"] is True
    # b's subnets cannot be captured by a default pool of a's: a has none to make.
    pool = make(admin, "subnetpool", name="shared-default", prefixes=["10.200.0.0/16"], shared=True, is_default=True)
    # (On a network of its own: a network's subnets of one IP version come from one pool.)
    b_net = make(b, "network", name="b-pooled")
    sub = make(b, "subnet", network_id=b_net["id"], ip_version=4, use_default_subnetpool=True, prefixlen=28)
    assert sub["subnetpool_id"] == pool["id"]


# --- 6. what a network shows, and IP availability ----------------------------------------------------


def test_network_shows_only_readable_subnets(scene):
    a, admin = scene.a, scene.admin
    # The admin puts a subnet of b's on a's network: a sees the network, not b's subnet.
    foreign = make(admin, "subnet", network_id=scene.a_net["id"], ip_version=6, cidr="2001:db8:b::/64",
                   project_id="proj-b")  # fmt: skip
    assert foreign["id"] in ok(admin.get(f"/v2.0/networks/{scene.a_net['id']}"))["network"]["subnets"]
    for net in (scene.a_net["id"], scene.shared_net["id"]):
        shown = ok(a.get(f"/v2.0/networks/{net}"))["network"]["subnets"]
        listed = next(n for n in ok(a.get("/v2.0/networks"))["networks"] if n["id"] == net)["subnets"]
        assert shown == listed
        readable = [s["id"] for s in ok(a.get(f"/v2.0/subnets?network_id={net}"))["subnets"]]
        assert sorted(shown) == sorted(readable)
        for sid in ok(admin.get(f"/v2.0/networks/{net}"))["network"]["subnets"]:
            assert (sid in shown) == (a.get(f"/v2.0/subnets/{sid}").status_code == 200)
    assert foreign["id"] not in ok(a.get(f"/v2.0/networks/{scene.a_net['id']}"))["network"]["subnets"]
    err(a.get(f"/v2.0/subnets/{foreign['id']}"), 404)


def test_ip_availability_is_admin_only(scene):
    a, admin = scene.a, scene.admin
    # Neutron's default (get_network_ip_availability: admin only): a project's list is empty, its shows
    # are unknown ids, even of its own networks.
    assert ok(a.get("/v2.0/network-ip-availabilities"))["network_ip_availabilities"] == []
    unknown = str(uuid.uuid4())
    for net in (scene.a_net["id"], scene.shared_net["id"], scene.b_net["id"]):
        same_as_unknown(
            a.get(f"/v2.0/network-ip-availabilities/{net}"),
            a.get(f"/v2.0/network-ip-availabilities/{unknown}"),
            net,
            unknown,
        )
    shared = ok(admin.get(f"/v2.0/network-ip-availabilities/{scene.shared_net['id']}"))["network_ip_availability"]
    assert shared["used_ips"] == 1 and shared["subnet_ip_availability"][0]["subnet_id"] == scene.shared_subnet["id"]
    listed = {n["network_id"] for n in ok(admin.get("/v2.0/network-ip-availabilities"))["network_ip_availabilities"]}
    assert {scene.a_net["id"], scene.b_net["id"], scene.shared_net["id"]} <= listed


# --- 7. smaller id oracles --------------------------------------------------------------------------


def test_default_pool_of_another_project_is_not_named(scene):
    a, admin = scene.a, scene.admin
    ask = {"subnet": {"network_id": scene.a_net["id"], "ip_version": 4, "use_default_subnetpool": True}}
    before = a.post("/v2.0/subnets", json=ask)
    err(before, 400)
    private = make(admin, "subnetpool", name="b-default", prefixes=["10.128.0.0/16"], is_default=True,
                   project_id="proj-b")  # fmt: skip
    after = a.post("/v2.0/subnets", json=ask)
    assert (after.status_code, after.text) == (before.status_code, before.text)
    assert private["id"] not in after.text
    # b itself gets its default (on a network without subnets from no pool).
    b_net = make(scene.b, "network", name="b-pooled")
    sub = make(scene.b, "subnet", network_id=b_net["id"], ip_version=4, use_default_subnetpool=True)
    assert sub["subnetpool_id"] == private["id"]


def test_fixed_ips_naming_a_hidden_subnet_is_an_unknown_subnet(scene):
    a = scene.a
    unknown = str(uuid.uuid4())
    hidden = scene.b_subnet["id"]
    for net in (scene.a_net["id"], scene.shared_net["id"]):
        same_as_unknown(
            a.post("/v2.0/ports", json={"port": {"network_id": net, "fixed_ips": [{"subnet_id": hidden}]}}),
            a.post("/v2.0/ports", json={"port": {"network_id": net, "fixed_ips": [{"subnet_id": unknown}]}}),
            hidden,
            unknown,
        )
    # A subnet a can read but on another network is still the 400 it was.
    body = {"port": {"network_id": scene.a_net["id"], "fixed_ips": [{"subnet_id": scene.shared_subnet["id"]}]}}
    err(a.post("/v2.0/ports", json=body), 400, "InvalidInput")


# --- address scopes (issue 13 adds the resource; this runs once it is served) -------------------------


def test_address_scopes_follow_the_table(scene):
    a, b, admin = scene.a, scene.b, scene.admin
    if admin.get("/v2.0/address-scopes").status_code == 404:
        pytest.skip("address scopes are not served yet (issue 13)")
    mine = ok(a.post("/v2.0/address-scopes", json={"address_scope": {"name": "a-scope", "ip_version": 4}}), 201)
    assert mine["address_scope"]["project_id"] == "proj-a"
    body = {"address_scope": {"name": "x", "ip_version": 4, "shared": True}}
    err(a.post("/v2.0/address-scopes", json=body), 403, "PolicyNotAuthorized")
    hidden = ok(b.post("/v2.0/address-scopes", json={"address_scope": {"name": "b-scope", "ip_version": 4}}), 201)
    hidden_id, unknown = hidden["address_scope"]["id"], str(uuid.uuid4())
    for method, payload in (("GET", None), ("PUT", {"address_scope": {"name": "stolen"}}), ("DELETE", None)):
        same_as_unknown(
            a.request(method, f"/v2.0/address-scopes/{hidden_id}", json=payload),
            a.request(method, f"/v2.0/address-scopes/{unknown}", json=payload),
            hidden_id,
            unknown,
        )
    same_as_unknown(
        a.get(f"/v2.0/address-scopes?marker={hidden_id}"),
        a.get(f"/v2.0/address-scopes?marker={unknown}"),
        hidden_id,
        unknown,
    )
    assert hidden_id not in a.get("/v2.0/address-scopes").text
    shared = ok(admin.post("/v2.0/address-scopes", json={"address_scope": {"name": "ops", "ip_version": 4,
                "shared": True, "project_id": "proj-ops"}}), 201)["address_scope"]  # fmt: skip
    ok(a.get(f"/v2.0/address-scopes/{shared['id']}"))
    err(
        a.put(f"/v2.0/address-scopes/{shared['id']}", json={"address_scope": {"name": "x"}}), 403, "PolicyNotAuthorized"
    )
    err(a.delete(f"/v2.0/address-scopes/{shared['id']}"), 403, "PolicyNotAuthorized")
    scope_id = mine["address_scope"]["id"]
    err(a.put(f"/v2.0/address-scopes/{scope_id}", json={"address_scope": {"shared": True}}), 403, "PolicyNotAuthorized")


# --- 8. the access log ------------------------------------------------------------------------------


def test_access_log_records_the_tokens_project(guarded, scene):
    with client(guarded.server, "tok-a", **{"X-Project-Id": "proj-b"}) as liar:
        claimed = liar.get("/v2.0/networks")
    plain = scene.a.get("/v2.0/networks")
    anon = httpx.get(f"{guarded.server.base}/v2.0/networks", headers={"X-Project-Id": "proj-b"})
    assert anon.status_code == 401
    wanted = {r.headers["x-openstack-request-id"]: r for r in (claimed, plain, anon)}
    found: dict[str, dict[str, Any]] = {}
    for _ in range(50):
        for line in guarded.server.log_path.read_text().splitlines():
            if line.startswith("{") and '"request_id"' in line:
                entry = json.loads(line)
                if entry.get("request_id") in wanted:
                    found[entry["request_id"]] = entry
        if len(found) == len(wanted):
            break
        time.sleep(0.1)
    assert found[claimed.headers["x-openstack-request-id"]]["project"] == "proj-a"
    assert found[plain.headers["x-openstack-request-id"]]["project"] == "proj-a"
    assert found[anon.headers["x-openstack-request-id"]]["project"] == ""


# --- 4. bodies are counted while they stream; 7. health checks say nothing of the database ---------


@pytest.fixture
def lone(tmp_path) -> Iterator[Server]:
    """A server of its own on SQLite (what these tests measure does not depend on the database)."""
    srv = Server(
        f"sqlite:///{tmp_path}/lone.db",
        "internal",
        tmp_path / "serve.log",
        api_token=ADMIN_TOKEN,
        project_tokens=json.dumps(TOKENS),
    )
    yield srv
    srv.stop()


def rss(pid: int) -> int:
    """Resident memory of a process in bytes, from /proc."""
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def chunked_post(server: Server, path: str, token: str | None, total: int, chunk: int = 1 << 20) -> tuple[int, int]:
    """Send ``total`` bytes to ``path`` ("METHOD /path") as a chunked body (no Content-Length), as a
    hostile client does: sending on after the answer, until the server stops reading; returns (status,
    bytes sent)."""
    head = [f"{path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Transfer-Encoding: chunked"]
    head += [f"X-Auth-Token: {token}"] if token else []
    piece = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
    sent = 0
    reply = b""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(5)
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            while sent < total:
                if select.select([s], [], [], 0)[0]:
                    reply += s.recv(65536)  # the answer may come long before the body ends
                s.sendall(piece)
                sent += chunk
        except OSError:
            pass  # the server stopped reading (a timeout) or closed the connection
        s.settimeout(10)
        try:
            while b"\r\n" not in reply:
                data = s.recv(65536)
                if not data:
                    break
                reply += data
        except OSError:
            pass
    status = int(reply.split(b" ")[1]) if reply.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def peak_rss_during(pid: int, fn: Callable[[], T]) -> tuple[T, int]:
    """``fn()`` and the highest RSS of process ``pid`` seen while it ran (sampled every 2 ms)."""
    peak = rss(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return result, peak


def test_chunked_body_is_refused_without_being_held(lone):
    pid = lone.proc.pid
    with client(lone, "tok-a") as a:
        for _ in range(20):  # warm up: imports, the connection pool, the first transactions
            ok(a.post("/v2.0/networks", json={"network": {"name": "warm"}}), 201)
            ok(a.get("/v2.0/networks"))
    idle = max(rss(pid) for _ in range(20))
    cases = [
        ("POST /v2.0/networks", None, 401),
        ("POST /v2.0/networks", "tok-a", 413),
        ("POST /v2.0/ports", ADMIN_TOKEN, 413),
        (f"PUT /v2.0/networks/{uuid.uuid4()}/tags", "tok-a", 413),
        ("POST /v2.0/no-such-thing", None, 404),
    ]
    for path, token, status in cases:
        (got, sent), peak = peak_rss_during(pid, lambda p=path, t=token: chunked_post(lone, p, t, 400 << 20))
        grew = (peak - idle) >> 10
        print(f"{path} token={token}: {got} after {sent >> 20} MiB sent; RSS idle {idle >> 20} MiB, peak +{grew} KiB")
        assert got == status, (token, got, sent)
        assert peak - idle < 8 << 20, f"server RSS grew {(peak - idle) >> 20} MiB over {idle >> 20} MiB idle"
        assert sent < 64 << 20, f"the server read on to {sent >> 20} MiB"  # it stopped, not just discarded
    with client(lone, "tok-a") as a:
        ok(a.get("/v2.0/networks"))  # and it still serves


def test_healthz_does_not_show_database_errors(lone, tmp_path):
    ok(httpx.get(f"{lone.base}/healthz"))
    with sqlite3.connect(tmp_path / "lone.db") as conn:
        conn.execute("DROP TABLE ipam_state")
    resp = httpx.get(f"{lone.base}/healthz")
    assert resp.status_code == 503
    assert resp.json()["reason"] == "database unavailable"
    assert "ipam_state" not in resp.text and "table" not in resp.text.lower()
