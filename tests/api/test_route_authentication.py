"""Every resource route checks the token before anything else: each endpoint asks for its caller first,
so a route added without that check is caught here, not in production."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pipam.api import discovery
from pipam.api.app import create_app
from pipam.config import load_settings
from pipam.service.resources import discover
from tests.conftest import new_schema

ADMIN, PROJECT = "admin-secret", "project-secret"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = new_schema("sqlite", str(tmp_path_factory.mktemp("auth")), "auth")
    app = create_app(load_settings(database_url=url, api_token=ADMIN, project_tokens={PROJECT: "p1"}))
    with TestClient(app) as c:
        yield c


def resource_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every route but the discovery ones (versions, extensions, health), which are open."""
    open_paths = {r.path for r in discovery.router.routes}
    return sorted(
        (method, route.path)
        for route in client.app.routes
        if isinstance(route, APIRoute) and route.path not in open_paths
        for method in route.methods
    )


def test_every_resource_route_refuses_a_missing_or_wrong_token(client):
    routes = resource_routes(client)
    # Every resource is in the loop, each with at least list, create, show, update and delete.
    assert {path.split("/")[2] for _, path in routes} == {m.DEFINITION.collection_path for m in discover()}
    assert len(routes) >= 5 * len(discover())
    refused = []
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for headers in ({}, {"X-Auth-Token": "not-a-token"}):
            # A body that is not even JSON: the token is checked before the body is read.
            resp = client.request(method, url, headers=headers, content=b"{not json")
            body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
            if resp.status_code != 401 or body.get("NeutronError", {}).get("type") != "HTTPUnauthorized":
                refused.append((method, path, headers, resp.status_code, resp.text[:120]))
    assert not refused, refused


def test_a_valid_token_passes_the_same_routes(client):
    """The check above is the token's doing: with one, the same requests get past it (to 400 or 404)."""
    for method, path in resource_routes(client):
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for token in (ADMIN, PROJECT):
            resp = client.request(method, url, headers={"X-Auth-Token": token}, content=b"{not json")
            assert resp.status_code != 401, (method, path, token, resp.text[:200])
