"""Schema-driven fuzzing: every operation of Pipam's own OpenAPI document, with generated input,
against a real server on each database. No response may be a 5xx; every 4xx carries the API's error body.

Besides what the schema allows, the strategies put NUL characters into the strings of otherwise valid
requests (bodies, filters, path ids: PostgreSQL can neither store nor compare them), and walk lists on
every sort key, the nullable ones too, in both directions, from markers of real resources."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipam.service.attributes import Resource
from pipam.service.bootstrap import upgrade_database
from pipam.service.resources import discover
from tests.api.conftest import NAUTOBOT_MARKS, api_database, driver_env, nautobot_settings
from tests.databases import fresh_url
from tests.server import Server

# Each backend once, and each database once (the database decides what input can hurt it).
# And the Nautobot driver, whose answers from a real Nautobot must become 4xx too.
SETUPS = [
    pytest.param(("sqlite", "builtin"), id="sqlite-builtin"),
    pytest.param(("sqlite", "internal"), id="sqlite-internal"),
    pytest.param(("postgresql", "internal"), id="postgresql-internal"),
    pytest.param(("mariadb", "builtin"), id="mariadb-builtin"),
    pytest.param(("sqlite", "nautobot"), id="sqlite-nautobot", marks=NAUTOBOT_MARKS),
]
DEFINITIONS: dict[str, Resource] = {f"/v2.0/{m.DEFINITION.collection_path}": m.DEFINITION for m in discover()}

pytestmark = pytest.mark.slow  # a minute or more per setup: every operation, many examples each


@pytest.fixture(scope="module", params=SETUPS)
def fuzz_server(request, tmp_path_factory) -> Iterator[Server]:
    kind, backend = request.param
    url = fresh_url(kind, str(tmp_path_factory.mktemp("fuzz")), "fuzz")
    drivers = {}
    if backend == "nautobot":  # a namespace of its own in the session's Nautobot
        drivers["nautobot"] = nautobot_settings(request.getfixturevalue("nautobot_server"), "fuzz")
    database = api_database(url, backend, drivers)
    upgrade_database(database.engine, backend)

    # Real resources for the generated requests to collide with.
    from pipam.testing.local import LocalClient
    from tests.helpers import net, pool, port, subnet

    n = net(database)["id"]
    subnet(database, n, "10.0.0.0/24")
    subnet(database, n, "2001:db8::/64", ipv6_address_mode="slaac")
    port(database, n, tags=["red"])
    scope = LocalClient(database).create("address_scope", name="s", ip_version=4)
    p = pool(database, name="p", prefixes=["10.100.0.0/16"], is_default=True, address_scope_id=scope["id"])
    # NULL and non-NULL values of the nullable sort keys (gateway_ip, subnetpool_id, ...).
    subnet(database, net(database, name="no-gateway")["id"], "10.1.0.0/24", gateway_ip=None)
    subnet(database, net(database, name="pooled")["id"], subnetpool_id=p["id"], prefixlen=24, ip_version=4)
    database.dispose()
    srv = Server(url, backend, tmp_path_factory.mktemp("fuzzlog") / "serve.log", max_bulk="20", **driver_env(drivers))
    yield srv
    srv.stop()


def check(case) -> None:  # type: ignore[no-untyped-def]
    response = case.call(timeout=30)
    where = f"{case.method} {case.formatted_path} body={case.body!r} query={case.query!r}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"NeutronError"}, f"{where}: {response.text}"
        assert set(body["NeutronError"]) == {"type", "message", "detail"}
        assert body["NeutronError"]["message"]


def _with_nul(value: Any) -> list[Any]:
    """Copies of a JSON-like value, each with a NUL character in one of its strings."""
    found: list[Any] = []
    if isinstance(value, str):
        return [value[: len(value) // 2] + "\x00" + value[len(value) // 2 :]]
    items = (
        list(value.items()) if isinstance(value, dict) else list(enumerate(value)) if isinstance(value, list) else []
    )
    for key, item in items:
        for poisoned in _with_nul(item):
            changed = copy.deepcopy(value)
            changed[key] = poisoned
            found.append(changed)
    return found


class World:
    """Real resources of the fuzzed server: ids to use as markers and path ids, valid create bodies."""

    def __init__(self, server: Server) -> None:
        self.ids: dict[str, list[str]] = {}
        with httpx.Client(base_url=server.base, timeout=30) as client:
            for path in DEFINITIONS:
                items = next(iter(client.get(path).json().values()))
                self.ids[path] = [item["id"] for item in items]
            network = next(n["id"] for n in client.get("/v2.0/networks?name=no-gateway").json()["networks"])
        self.creates: dict[str, dict[str, Any]] = {
            "/v2.0/networks": {"network": {"name": "n", "description": "d"}},
            "/v2.0/subnets": {"subnet": {"network_id": network, "cidr": "10.1.7.0/24", "ip_version": 4, "name": "s"}},
            "/v2.0/ports": {"port": {"network_id": network, "name": "p", "device_id": "dev", "device_owner": "x"}},
            "/v2.0/subnetpools": {"subnetpool": {"name": "p2", "prefixes": ["10.200.0.0/16"], "description": "d"}},
            "/v2.0/address-scopes": {"address_scope": {"name": "s2", "ip_version": 6}},
        }


def nul_strategies(operation: Any, world: World) -> list[st.SearchStrategy[Any]]:
    """Otherwise valid requests of this operation with a NUL character somewhere."""
    path, method = operation.path, operation.method.upper()
    out: list[st.SearchStrategy[Any]] = []
    if path in world.creates and method == "POST":
        out += [operation.as_strategy(body=b) for b in _with_nul(world.creates[path])]
    definition = DEFINITIONS.get(path)
    if definition is not None and method == "GET":
        out += [operation.as_strategy(query={name: "a\x00b"}) for name in definition.filters()]
    member = path.removesuffix("/{item_id}")
    if member != path and world.ids.get(member) and method == "PUT" and member in DEFINITIONS:
        singular = DEFINITIONS[member].singular
        real = {"item_id": world.ids[member][0]}
        out += [
            operation.as_strategy(path_parameters=real, body={singular: {key: "a\x00b"}})
            for key in ("name", "description")
        ]
    return out


@st.composite
def sorted_walk(draw: st.DrawFn, operation: Any, world: World) -> Any:
    """A page of a list on any sort key (nullable ones included), either direction, from a marker of a
    real resource of that collection or from none."""
    definition = DEFINITIONS[operation.path]
    query = {
        "sort_key": draw(st.sampled_from(sorted(definition.sort_keys()))),
        "sort_dir": draw(st.sampled_from(["asc", "desc"])),
        "limit": str(draw(st.integers(1, 3))),
    }
    if draw(st.booleans()):
        query["page_reverse"] = "True"
    ids = world.ids.get(operation.path, [])
    if ids and draw(st.booleans()):
        query["marker"] = draw(st.sampled_from(ids))
    return draw(operation.as_strategy(query=query))


def test_every_operation_with_generated_input(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    covered = {(op.method.upper(), op.path) for op in operations}
    for wanted in (
        ("POST", "/v2.0/address-scopes"),
        ("PUT", "/v2.0/address-scopes/{item_id}"),
        ("PUT", "/v2.0/subnetpools/{item_id}/add_prefixes"),
        ("PUT", "/v2.0/subnetpools/{item_id}/remove_prefixes"),
        ("POST", "/v2.0/ports/{item_id}/tags"),
        ("GET", "/v2.0/networks/{item_id}/tags/{tag}"),
    ):
        assert wanted in covered, wanted
    assert {"gateway_ip", "subnetpool_id"} <= set(DEFINITIONS["/v2.0/subnets"].sort_keys())
    world = World(fuzz_server)
    for operation in operations:
        strategies = [operation.as_strategy(), *nul_strategies(operation, world)]
        if operation.method.upper() == "GET" and operation.path in DEFINITIONS:
            strategies.append(sorted_walk(operation, world))

        @given(case=st.one_of(strategies))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            check(case)

        run()


def test_garbage_bodies_and_paths(fuzz_server):
    """Hand-picked nonsense the schema generator is unlikely to produce."""
    cases = [
        ("POST", "/v2.0/ports", b"\xff\xfe\x00garbage"),
        ("POST", "/v2.0/subnets", b'{"subnet": {"network_id": "x", "cidr": "10.0.0.0/8", "ip_version": 99}}'),
        ("POST", "/v2.0/subnets", b'{"subnet": {"network_id": {"a": 1}, "cidr": ["x"]}}'),
        ("POST", "/v2.0/ports", b'{"port": {"network_id": "n", "fixed_ips": "10.0.0.1"}}'),
        ("POST", "/v2.0/ports", b'{"port": {"network_id": "n", "fixed_ips": [{"ip_address": 7}]}}'),
        ("PUT", "/v2.0/networks/" + "a" * 5000, b'{"network": {}}'),
        ("GET", "/v2.0/ports?limit=-5", b""),
        ("GET", "/v2.0/ports?sort_key=fixed_ips", b""),
        ("GET", "/v2.0/ports?marker=" + "z" * 300, b""),
        ("POST", "/v2.0/subnetpools", b'{"subnetpool": {"prefixes": ["::/0", "0.0.0.0/0"]}}'),
        ("POST", "/v2.0/networks", b'{"networks": [' + b'{"name": "x"},' * 25 + b'{"name": "y"}]}'),
        ("DELETE", "/v2.0/subnets/%00", b""),
        ("PUT", "/v2.0/subnetpools/x/add_prefixes", b'{"prefixes": [null, 5, {"a": 1}]}'),
        ("PUT", "/v2.0/subnetpools/x/remove_prefixes", b"[1, 2]"),
        ("POST", "/v2.0/networks/x/tags", b'{"tags": [["nested"]]}'),
        ("PUT", "/v2.0/ports/x", b'{"port": {"mac_address": ["fa:16:3e:00:00:01"]}}'),
        ("POST", "/v2.0/address-scopes", b'{"address_scope": {"ip_version": "4.0"}}'),
        ("GET", "/v2.0/networks?router:external=maybe", b""),
        ("POST", "/v2.0/networks", b'{"network": {"name": "a\\u0000b"}}'),
        ("GET", "/v2.0/networks?name=a%00b", b""),
        ("GET", "/v2.0/networks/a%00b", b""),
        ("GET", "/v2.0/subnets?sort_key=subnetpool_id&limit=1&marker=%00", b""),
    ]
    with httpx.Client(base_url=fuzz_server.base, timeout=30) as client:
        for method, path, body in cases:
            r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
            assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}
