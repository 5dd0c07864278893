"""The app's own start and stop, as uvicorn drives them through the ASGI lifespan."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pipam.api.app import create_app
from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database


def test_a_stopping_app_closes_its_pooled_connections(tmp_path):
    url = f"sqlite:///{tmp_path}/lifespan.db"
    settings = load_settings(database_url=url)
    database = Database(settings)
    upgrade_database(database.engine, "internal")
    database.dispose()
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/v2.0/networks").status_code == 200
        assert app.state.database.engine.pool.checkedin() == 1  # kept for the next request
    assert app.state.database.engine.pool.checkedin() == 0
