"""Shows and lists read rows as views (``pipam.service.views``): every resource renders from its view
exactly as from its ORM instance, relationships and their order included, on every database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from pipam.api.rendering import render, render_many
from pipam.db.engine import json_loads
from pipam.db.models import Port
from pipam.service.listing import ListQuery, list_items
from pipam.service.policy import ADMIN, Caller, show_visible
from pipam.service.resources import discover
from pipam.service.views import CHUNK
from pipam.testing import local
from tests.helpers import net, pool, port, statements_sent, subnet

CALLERS = [ADMIN, Caller(project_id="someone-else", restricted=True)]


@pytest.fixture
def many_of_each(db) -> dict[str, list[str]]:
    """Resources with no, one and several related rows, whose natural order differs from creation order."""
    client = local.LocalClient(db)
    scope = client.create("address_scope", name="s", ip_version=4)
    plain_pool = pool(db, name="p0", prefixes=["10.200.0.0/16"], default_prefixlen=24)
    scoped_pool = pool(
        db,
        name="p1",
        prefixes=["10.9.0.0/16", "10.8.0.0/16", "10.7.0.0/24"],
        default_prefixlen=24,
        address_scope_id=scope["id"],
    )
    empty = net(db, name="empty")["id"]
    n = net(db, name="n", shared=True)["id"]
    v4 = subnet(
        db,
        n,
        "10.8.0.0/24",
        subnetpool_id=scoped_pool["id"],
        allocation_pools=[{"start": "10.8.0.200", "end": "10.8.0.250"}, {"start": "10.8.0.10", "end": "10.8.0.20"}],
    )
    v6 = subnet(db, n, "fd00:1::/64", ip_version=6)
    ports = [
        port(db, n, fixed_ips=[{"ip_address": "10.8.0.19"}, {"ip_address": "10.8.0.201"}, {"subnet_id": v6["id"]}]),
        port(db, n, fixed_ips=[]),
        port(db, n, tags=["a", "b"]),
    ]
    return {
        "address_scope": [scope["id"]],
        "subnetpool": [plain_pool["id"], scoped_pool["id"]],
        "network": [empty, n],
        "subnet": [v4["id"], v6["id"]],
        "port": [p["id"] for p in ports],
    }


@pytest.mark.parametrize("caller", CALLERS, ids=["admin", "project"])
def test_a_shown_view_renders_as_its_instance(db, many_of_each, caller):
    for module in discover():
        definition = module.DEFINITION
        for item_id in many_of_each[definition.singular]:

            def compare(u, definition=definition, item_id=item_id) -> None:
                view = show_visible(u.tx, definition, item_id, ADMIN)
                instance = u.session.get(definition.model, item_id)
                assert not isinstance(view, definition.model)
                assert render(definition, view, caller=caller) == render(definition, instance, caller=caller)

            db.run(compare, write=False)


@pytest.mark.parametrize("caller", CALLERS, ids=["admin", "project"])
def test_a_listed_view_renders_as_its_instance(db, many_of_each, caller):
    for module in discover():
        definition = module.DEFINITION

        def compare(u, definition=definition) -> None:
            page = list_items(u.tx, definition, ListQuery(), ADMIN)
            assert sorted(v.id for v in page.items) == sorted(many_of_each[definition.singular])
            for view in page.items:
                instance = u.session.get(definition.model, view.id)
                assert render(definition, view, caller=caller) == render(definition, instance, caller=caller)

        db.run(compare, write=False)


def test_a_page_larger_than_one_in_list_loads_every_row_its_relationships(db):
    """The relationships of a filtered page are read in IN lists of ``CHUNK`` parents; none is lost at the
    seams (and none on an unfiltered page, which joins them to its own statement)."""
    n = net(db, name="n")["id"]
    subnet(db, n, "10.0.0.0/20")
    count = CHUNK + 7
    db.run(lambda u: local.create_many(u, "port", [{"network_id": n}] * count))
    definition = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")

    def page(u: Any, filters: dict[str, list[str]]) -> list[Any]:
        return list_items(u.tx, definition, ListQuery(limit=count, filters=filters), ADMIN).items

    for filters in ({"network_id": [n]}, {}):
        views = db.run(lambda u, filters=filters: page(u, filters), write=False)
        assert len(views) == count
        assert all(len(v.fixed_ips) == 1 for v in views)
        assert len({v.fixed_ips[0].ip_address for v in views}) == count


@pytest.mark.parametrize("text", ['["a", "b"]', '{"k": [1, 2.5, null, true]}', "[]", '"\\u00e9"', f'"{"x" * 300}"'])
def test_json_columns_decode_as_json_does(text):
    assert json_loads(text) == json.loads(text)
    assert json_loads(text.encode()) == json.loads(text)


def test_a_tag_only_json_can_decode_is_still_read(db):
    """orjson refuses a lone surrogate's escape, which json writes and reads. The API refuses such a tag
    now, but SQLite and PostgreSQL stored one before: it must still show (MariaDB's JSON check never let
    it in)."""
    assert json_loads('["\\ud800x"]') == ["\ud800x"]
    if db.engine.url.get_backend_name() == "mysql":
        pytest.skip("MariaDB never stored it")
    n = net(db, name="n")["id"]
    made = port(db, n)
    db.run(lambda u: u.session.execute(update(Port).where(Port.id == made["id"]).values(tags=["\ud800x"])))
    definition = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")

    def read(u: Any) -> tuple[Any, Any]:
        # A view holds the tags as stored; rendering decodes them.
        listed = list_items(u.tx, definition, ListQuery(), ADMIN).items
        shown = show_visible(u.tx, definition, made["id"], ADMIN)
        return render_many(definition, listed)[0]["tags"], render(definition, shown)["tags"]

    assert db.run(read, write=False) == (["\ud800x"], ["\ud800x"])


def test_a_tag_filtered_page_that_fills_early_still_loads_its_relationships(db):
    """Tag filters read rows as a stream and stop when the page is full; the page's addresses are read
    after that on the same connection, which must not trip over the unfinished stream."""
    n = net(db, name="n")["id"]
    subnet(db, n, "10.0.0.0/24")
    db.run(lambda u: local.create_many(u, "port", [{"network_id": n, "tags": ["a"]}] * 5))
    definition = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")

    def page(u: Any) -> list[Any]:
        return list_items(u.tx, definition, ListQuery(filters={"tags": ["a"]}, limit=2), ADMIN).items

    views = db.run(page, write=False)
    assert len(views) == 2
    assert all(len(v.fixed_ips) == 1 for v in views)


def test_an_admin_show_and_a_page_open_no_orm_session(db):
    """Reads select views on the transaction's connection; the ORM session is opened only when something
    needs it: a marker's lookup, or the policy's lookup of a port's network for a project's caller."""
    n = net(db, name="n")["id"]
    subnet(db, n, "10.0.0.0/24")
    made = [port(db, n, project_id="p1")["id"] for _ in range(3)]
    definition = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")
    opened: list[object] = []

    def count(session: Any, transaction: Any, connection: Any) -> None:
        opened.append(session)

    event.listen(Session, "after_begin", count)
    try:
        db.run(lambda u: show_visible(u.tx, definition, made[0], ADMIN), write=False)
        db.run(lambda u: list_items(u.tx, definition, ListQuery(limit=2), ADMIN), write=False)
        assert opened == []
        page = db.run(lambda u: list_items(u.tx, definition, ListQuery(limit=2, marker=min(made)), ADMIN), write=False)
        assert len(opened) == 1 and len(page.items) == 2
        shown = db.run(
            lambda u: show_visible(u.tx, definition, made[0], Caller(project_id="p1", restricted=True)), write=False
        )
        assert len(opened) == 2 and shown.id == made[0]
    finally:
        event.remove(Session, "after_begin", count)


@pytest.mark.parametrize(
    ("kind", "fields", "reads"),
    [
        ("port", ["id", "name"], False),
        ("port", ["id", "fixed_ips"], True),
        ("network", ["id", "mtu"], False),
        ("network", ["ipv6_address_scope"], True),
        ("network", ["subnets"], True),
        ("subnet", ["cidr"], False),
        ("subnet", ["allocation_pools"], True),
        ("subnetpool", ["name"], False),
        ("subnetpool", ["prefixes"], True),
    ],
)
def test_a_page_reads_a_relationship_only_for_fields_that_show_it(db, many_of_each, kind, fields, reads):
    """``fields=id,name`` on a port list reads no addresses; a relationship left out is None, so a reader
    that still reads it would fail rather than show an empty list."""
    definition = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == kind)
    (relationship,) = definition.related

    def page(u: Any, fields: list[str]) -> list[dict[str, Any]]:
        items = list_items(u.tx, definition, ListQuery(), ADMIN, fields=fields).items
        assert all((getattr(v, relationship) is not None) is (reads or not fields) for v in items)
        return [render(definition, v, fields) for v in items]

    with statements_sent(db) as sent:
        shown = db.run(lambda u: page(u, fields), write=False)
    assert len(sent) == (2 if reads else 1), sent
    whole = db.run(lambda u: page(u, []), write=False)
    assert shown == [{k: v for k, v in item.items() if k in fields} for item in whole]


@pytest.mark.parametrize(
    ("shape", "joined"),
    [
        ({}, True),
        ({"page_reverse": True}, True),
        ({"marker": "first"}, True),
        ({"sort": [("name", "desc")]}, False),
        ({"filters": "every id"}, False),
    ],
    ids=["plain", "reverse", "marker", "sorted", "filtered"],
)
def test_a_page_reads_its_relationships_by_its_own_statement_only_when_that_is_cheap(db, many_of_each, shape, joined):
    """A page without filters or a sort reads its rows' relationships with its own statement nested in
    theirs (an index walk); with one, by the rows' keys, so a scan or a sort is not made twice. Either
    way every row shows as its instance does."""
    for module in discover():
        definition = module.DEFINITION
        ids = sorted(many_of_each[definition.singular])
        query = ListQuery(
            limit=max(1, len(ids) - 1),
            page_reverse=shape.get("page_reverse", False),
            marker=ids[0] if "marker" in shape else None,
            sort=shape.get("sort", []),
            filters={"id": ids} if "filters" in shape else {},
        )
        if query.marker is not None and len(ids) == 1:
            continue  # nothing after the only row

        def compare(u, definition=definition, query=query) -> int:
            page = list_items(u.tx, definition, query, ADMIN).items
            for view in page:
                instance = u.session.get(definition.model, view.id)
                assert render(definition, view) == render(definition, instance)
            return len(page)

        with statements_sent(db) as sent:
            assert db.run(compare, write=False) >= 1
        # Joined to the page (SQLite, MariaDB) or given it as an array of keys (PostgreSQL): either
        # way the page's own SELECT is nested in the children's statement.
        nested = ("JOIN (SELECT", "= ANY (ARRAY((SELECT")
        by_page = [s for s, _ in sent if any(n in s.upper() for n in nested)]
        assert bool(by_page) is (joined and bool(definition.related)), (definition.singular, sent)
