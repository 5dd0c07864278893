"""The app's own start and stop, as uvicorn drives them through the ASGI lifespan."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pipam.api.app import create_app
from pipam.config import load_settings
from tests.conftest import new_schema


def test_a_stopping_app_closes_its_pooled_connections(tmp_path):
    app = create_app(load_settings(database_url=new_schema("sqlite", str(tmp_path), "lifespan")))
    with TestClient(app) as client:
        assert client.get("/v2.0/networks").status_code == 200
        assert app.state.database.engine.pool.checkedin() == 1  # kept for the next request
    assert app.state.database.engine.pool.checkedin() == 0
