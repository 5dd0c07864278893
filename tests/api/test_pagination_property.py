"""Property: walking a list page by page, on any sort key (nullable ones too) in either direction,
forward through ``next`` or backward through ``previous``, returns every row exactly once, in the
order one unpaged list gives, on every database.

The data is random: subnets from a subnet pool or from none (``subnetpool_id`` NULL), with or without
a gateway (``gateway_ip`` NULL), with repeated names (ties the id has to break); so are the page size
and the sort keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipam.api.app import create_app
from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.databases import reset
from pipam.testing.local import create
from tests.databases import fresh_url

SORT_KEYS = ["subnetpool_id", "gateway_ip", "name", "cidr", "enable_dhcp", "id"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = fresh_url(request.param, str(tmp_path_factory.mktemp("pageprop")), "pageprop")
    app_settings = load_settings(database_url=url, ipam_driver="internal", log_level="WARNING")
    db = Database(app_settings)
    upgrade_database(db.engine, "internal")
    db.dispose()
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def _build(db: Database, rows: list[tuple[bool, bool, str, bool]]) -> None:
    """One transaction: a network for subnets from a pool, one for subnets from none (a network's
    subnets of one IP version come from one pool or none), then the subnets."""

    def run(u: Any) -> None:
        pool = create(u, "subnetpool", {"name": "p", "prefixes": ["10.0.0.0/8"], "default_prefixlen": 24})
        pooled = create(u, "network", {"name": "pooled"})
        plain = create(u, "network", {"name": "plain"})
        for i, (from_pool, no_gateway, name, dhcp) in enumerate(rows):
            body: dict[str, Any] = {"name": name, "ip_version": 4, "enable_dhcp": dhcp}
            if no_gateway:
                body["gateway_ip"] = None
            if from_pool:
                body.update(network_id=pooled["id"], subnetpool_id=pool["id"])
            else:
                body.update(network_id=plain["id"], cidr=f"192.168.{i}.0/24")
            create(u, "subnet", body)

    db.run(run)


def _relative(href: str) -> str:
    parts = urlsplit(href)
    return f"{parts.path}?{parts.query}"


def _walk(client: TestClient, first: str, rel: str) -> list[str]:
    """Ids page by page, following ``rel`` links until a page has none."""
    seen: list[str] = []
    url: str | None = first
    for _ in range(200):  # a loop that never ends is a failure, not a hang
        if url is None:
            return seen
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        ids = [s["id"] for s in body["subnets"]]
        seen = seen + ids if rel == "next" else ids + seen
        url = next((_relative(link["href"]) for link in body.get("subnets_links", []) if link["rel"] == rel), None)
    raise AssertionError("the walk did not end")


rows = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.sampled_from(["", "a", "b"]), st.booleans()), min_size=0, max_size=12
)
sorts = st.lists(st.tuples(st.sampled_from(SORT_KEYS), st.sampled_from(["asc", "desc"])), min_size=1, max_size=2)


@pytest.mark.slow  # 25 databases built and walked: about 25 s on SQLite, more on the servers
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows, sort=sorts, page=st.integers(1, 5))
def test_every_row_exactly_once(client: TestClient, data, sort, page) -> None:
    db: Database = client.app.state.database  # type: ignore[attr-defined]
    reset(db.engine, "internal")
    _build(db, data)
    order = "&".join(f"sort_key={k}&sort_dir={d}" for k, d in sort)
    whole = [s["id"] for s in client.get(f"/v2.0/subnets?{order}").json()["subnets"]]
    assert len(whole) == len(data)
    forward = _walk(client, f"/v2.0/subnets?{order}&limit={page}", "next")
    assert forward == whole
    # Backward from the end: the last page is the one before a marker-less reversed page.
    backward = _walk(client, f"/v2.0/subnets?{order}&limit={page}&page_reverse=True", "previous")
    assert backward == whole
