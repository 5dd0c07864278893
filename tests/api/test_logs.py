"""Logs an operator can read and a log shipper can parse: one JSON object a line, one line per request."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from pipam.api.app import create_app
from pipam.api.logs import JsonFormatter
from pipam.config import load_settings
from pipam.service.resources import networks
from tests.conftest import new_schema
from tests.helpers import records_of
from tests.server import Server


@pytest.fixture(scope="module")
def info_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server logging at INFO (the shared ones log warnings only); the database does not matter here."""
    url = new_schema("sqlite", str(tmp_path_factory.mktemp("logs")), "logs")
    srv = Server(url, "internal", tmp_path_factory.mktemp("logslog") / "serve.log", log_level="INFO")
    yield srv
    srv.stop()


def _lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert all(line.startswith("{") for line in text.splitlines()), text  # nothing but JSON lines
    return [json.loads(line) for line in text.splitlines()]


def _access(server: Server, request_id: str) -> list[dict]:
    """The access-log lines of one request (written just after its answer is sent: wait for it)."""
    deadline = time.monotonic() + 30
    while True:
        found = [e for e in _lines(server.log_path) if e.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            return [e for e in found if e["logger"] == "pipam.access"]
        time.sleep(0.05)


def test_one_json_line_per_request(info_server):
    with httpx.Client(base_url=info_server.base, timeout=30) as client:
        resp = client.get("/v2.0/networks/nope?fields=id", headers={"X-Project-Id": "proj-x"})
        (entry,) = _access(info_server, resp.headers["x-openstack-request-id"])
        assert entry["method"] == "GET" and entry["path"] == "/v2.0/networks/nope?fields=id"
        assert entry["status"] == 404 and entry["error_type"] == "NetworkNotFound" and entry["project"] == "proj-x"
        assert entry["client"].startswith("127.0.0.1:") and entry["duration_ms"] >= 0
        assert entry["ts"].endswith("Z") and "T" in entry["ts"]  # UTC, with its zone
        made = client.post("/v2.0/networks", json={"network": {"name": "n"}})
        (entry,) = _access(info_server, made.headers["x-openstack-request-id"])
        assert entry["status"] == 201 and "error_type" not in entry
        # Errors Starlette raises itself, the path guard's and the body limit's carry their type too.
        for method, path, status, etype in (
            ("GET", "/v2.0/nothing-here", 404, "HTTPNotFound"),
            ("GET", "/v2.0/ports/a%00b", 400, "HTTPBadRequest"),
            ("PATCH", "/v2.0/networks", 405, "HTTPMethodNotAllowed"),
        ):
            resp = client.request(method, path)
            (entry,) = _access(info_server, resp.headers["x-openstack-request-id"])
            assert (entry["status"], entry["error_type"]) == (status, etype)


def test_uvicorn_lines_are_json_too(info_server):
    loggers = {e["logger"] for e in _lines(info_server.log_path)}
    assert "uvicorn.error" in loggers  # "Started server process", "Application startup complete"


def test_a_bug_is_logged_once_with_its_request_and_traceback(tmp_path, monkeypatch):
    """A bug outside the database: 500 in Neutron's format, its traceback logged with the request id,
    and not called a database error."""
    app = create_app(load_settings(database_url=new_schema("sqlite", str(tmp_path), "bug")))

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(networks, "create", broken)
    with records_of("pipam", logging.INFO) as records, TestClient(app, raise_server_exceptions=False) as client:
        resp = client.post("/v2.0/networks", json={"network": {"name": "n"}})
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert resp.status_code == 500
    assert resp.json()["NeutronError"]["type"] == "HTTPInternalServerError"
    request_id = resp.headers["x-openstack-request-id"]
    errors = [e for e in lines if e["level"] == "ERROR"]
    assert len(errors) == 1
    (error,) = errors
    assert error["request_id"] == request_id and "ZeroDivisionError: a bug" in error["exc"]
    assert "database" not in error["msg"]
    (access,) = [e for e in lines if e["logger"] == "pipam.access"]
    assert access["status"] == 500 and access["error_type"] == "HTTPInternalServerError"
