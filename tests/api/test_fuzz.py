"""Schema-driven fuzzing: every operation of Pipam's own OpenAPI document, with generated input,
against a real server on SQLite. No response may be a 5xx; every 4xx carries the API's error body."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from tests.server import Server


@pytest.fixture(scope="module", params=["builtin", "internal"])
def fuzz_server(request, tmp_path_factory) -> Iterator[Server]:
    backend = request.param
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db"
    database = Database(load_settings(database_url=url, ipam_driver=backend))
    upgrade_database(database.engine, backend)

    # Real resources for the generated requests to collide with.
    from pipam.testing.local import LocalClient
    from tests.helpers import net, pool, port, subnet

    n = net(database)["id"]
    subnet(database, n, "10.0.0.0/24")
    subnet(database, n, "2001:db8::/64", ipv6_address_mode="slaac")
    port(database, n, tags=["red"])
    scope = LocalClient(database).create("address_scope", name="s", ip_version=4)
    pool(database, name="p", prefixes=["10.100.0.0/16"], is_default=True, address_scope_id=scope["id"])
    database.dispose()
    srv = Server(url, backend, tmp_path_factory.mktemp("fuzzlog") / "serve.log", max_bulk="20")
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
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
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
    ]
    with httpx.Client(base_url=fuzz_server.base, timeout=30) as client:
        for method, path, body in cases:
            r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
            assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}
