"""How a request finds its resource endpoint (``pipam.api.routes.DirectRoute``): behind a path prefix, by
method, and what a wrongly written endpoint does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from pipam.api.app import create_app
from pipam.api.routes import DirectRoute
from pipam.config import load_settings
from tests.conftest import new_schema


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    url = new_schema("sqlite", str(tmp_path_factory.mktemp("routes")), "routes")
    return create_app(load_settings(database_url=url))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def test_the_path_reaches_the_endpoint_and_each_collection_its_own(client):
    network = client.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
    assert client.get(f"/v2.0/networks/{network['id']}").json()["network"]["name"] == "n"
    # The same id under another collection is that collection's to look up, not the network's.
    missing = client.get(f"/v2.0/subnets/{network['id']}")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "SubnetNotFound"
    # Percent-decoded, as Neutron reads it.
    assert client.get("/v2.0/networks/%7Bx%7D").json()["NeutronError"]["message"] == "Network {x} could not be found."
    assert client.get(f"/v2.0/networks/{network['id']}/tags").json() == {"tags": []}


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("PATCH", "/v2.0/networks/abc", 405, "HTTPMethodNotAllowed"),
        ("POST", "/v2.0/networks/abc", 405, "HTTPMethodNotAllowed"),
        ("GET", "/v2.0/networksx", 404, "HTTPNotFound"),
        ("GET", "/v2.0/networks/a/b", 404, "HTTPNotFound"),
    ],
)
def test_a_path_no_route_serves_is_refused_as_neutron_does(client, method, path, status, error):
    resp = client.request(method, path)
    assert resp.status_code == status
    assert resp.json()["NeutronError"]["type"] == error


def test_behind_a_path_prefix(app):
    """A proxy that serves the API under a prefix passes it as the ASGI root path (uvicorn --root-path)."""
    with TestClient(app, root_path="/networking") as prefixed:
        made = prefixed.post("/networking/v2.0/networks", json={"network": {"name": "behind"}})
        assert made.status_code == 201
        network_id = made.json()["network"]["id"]
        assert prefixed.get(f"/networking/v2.0/networks/{network_id}").json()["network"]["name"] == "behind"
        listed = prefixed.get("/networking/v2.0/networks").json()["networks"]
        assert network_id in [n["id"] for n in listed]
        missing = prefixed.get("/networking/v2.0/networks/abc")
        assert missing.status_code == 404
        assert missing.json()["NeutronError"]["type"] == "NetworkNotFound"


def test_an_endpoint_that_returns_data_instead_of_a_response_fails_loudly():
    """Nothing would turn it into JSON (FastAPI's handler is skipped): a new endpoint that forgets it fails its
    first test instead of answering something else."""
    router = APIRouter(route_class=DirectRoute)

    @router.get("/things/{item_id}")
    async def show(item_id: str, request: Request) -> dict[str, str]:
        return {"id": item_id}

    bare = FastAPI()
    bare.router.routes.extend(router.routes)
    with TestClient(bare) as c, pytest.raises(TypeError, match="must return a Response"):
        c.get("/things/1")


def test_a_route_body_limit_is_refused_rather_than_dropped():
    """FastAPI enforces a route's ``max_body_size`` in the layer a DirectRoute does without."""
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(ValueError, match="no body limit of its own"):
        router.add_api_route("/things", lambda request: None, methods=["POST"], max_body_size=10)
