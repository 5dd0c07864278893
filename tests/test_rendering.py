"""Rendering: every resource shown as its attribute map says, whichever way rendering reads it, and reads
that run where they should."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from pipam.api.context import read
from pipam.api.rendering import render, render_many
from pipam.service.attributes import Ip, ListOf, Record, Tags, Timestamp, Uuid
from pipam.service.listing import ListQuery, list_items
from pipam.service.policy import ADMIN, Caller, show_visible
from pipam.service.resources import discover
from pipam.testing import local
from tests.helpers import net, pool, port, subnet


def one_by_one(definition: Any, obj: Any, caller: Caller) -> dict[str, Any]:
    """Each visible attribute read and converted on its own: what the attribute map means."""
    return {a.name: a.kind.wire(a.value_of(obj, caller)) for a in definition.visible()}


@pytest.fixture
def one_of_each(db) -> dict[str, str]:
    scope = local.LocalClient(db).create("address_scope", name="s", ip_version=4)
    subnetpool = pool(db, name="p", prefixes=["10.8.0.0/16"], default_prefixlen=24, address_scope_id=scope["id"])
    n = net(db, name="n")["id"]
    s = subnet(
        db,
        n,
        "10.8.0.0/24",
        subnetpool_id=subnetpool["id"],
        host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.8.0.9"}],
        dns_nameservers=["10.8.0.53"],
    )
    p = port(db, n, tags=["a", "b"])
    return {
        "address_scope": scope["id"],
        "subnetpool": subnetpool["id"],
        "network": n,
        "subnet": s["id"],
        "port": p["id"],
    }


@pytest.mark.parametrize(
    "caller", [ADMIN, Caller(project_id="someone-else", restricted=True)], ids=["admin", "project"]
)
def test_every_resource_renders_each_attribute_as_its_map_says(db, one_of_each, caller):
    shown: set[str] = set()
    for module in discover():
        definition = module.DEFINITION
        item_id = one_of_each[definition.singular]

        def compare(u, definition=definition, item_id=item_id) -> None:
            obj = show_visible(u.tx, definition, item_id, ADMIN)
            assert render(definition, obj, caller=caller) == one_by_one(definition, obj, caller)
            names = [a.name for a in definition.visible()][::3]
            assert render(definition, obj, names, caller) == {
                k: v for k, v in one_by_one(definition, obj, caller).items() if k in names
            }

        db.run(compare, write=False)
        shown.add(definition.singular)
    assert shown == set(one_of_each)


@pytest.mark.parametrize(
    "caller", [ADMIN, Caller(project_id="someone-else", restricted=True)], ids=["admin", "project"]
)
def test_a_page_renders_each_row_as_its_map_says(db, one_of_each, caller):
    """A list page converts a column at a time: each row must still be what its attributes say, in
    order, whether all attributes are shown or some (with and without one of their own wire form)."""
    n = one_of_each["network"]
    port(db, n, tags=["z"], name="second")
    port(db, n, fixed_ips=[], name="no addresses")
    for module in discover():
        definition = module.DEFINITION

        def compare(u, definition=definition) -> int:
            page = list_items(u.tx, definition, ListQuery(), ADMIN).items
            expected = [one_by_one(definition, obj, caller) for obj in page]
            assert render_many(definition, page, caller=caller) == expected
            visible = [a.name for a in definition.visible()]
            for names in (visible[::3], ["id", "name"], ["created_at"]):
                chosen = [{k: v for k, v in row.items() if k in names} for row in expected]
                assert render_many(definition, page, names, caller) == chosen
            assert render_many(definition, [], caller=caller) == []
            return len(page)

        rows = db.run(compare, write=False)
        assert rows >= (3 if definition.singular == "port" else 1)


def test_a_view_renders_exactly_as_the_instance_of_the_same_row(db, one_of_each):
    """Shows and lists render views read by Core (on SQLite their timestamps as the stored text), a
    create renders the instance it made: a client must see the same values either way."""
    for module in discover():
        definition = module.DEFINITION
        item_id = one_of_each[definition.singular]

        def compare(u, definition=definition, item_id=item_id) -> dict[str, Any]:
            instance = render(definition, u.session.get(definition.model, item_id))
            assert render(definition, show_visible(u.tx, definition, item_id, ADMIN)) == instance
            page = render_many(definition, list_items(u.tx, definition, ListQuery(), ADMIN).items)
            assert [row for row in page if row["id"] == item_id] == [instance]
            return instance

        shown = db.run(compare, write=False)
        for name in ("created_at", "updated_at"):
            if name in shown:
                assert datetime.strptime(shown[name], "%Y-%m-%dT%H:%M:%SZ"), (definition.singular, name)


def test_a_timestamp_stored_as_text_is_shown_as_the_datetime_it_holds():
    """SQLite's text (SQLAlchemy writes microseconds; a value written by SQL itself may have none)."""
    stamp = Timestamp()
    for text in ("2026-01-31 12:00:05.999999", "2026-01-31 12:00:05"):
        assert stamp.wire(text) == stamp.wire(datetime.fromisoformat(text)) == "2026-01-31T12:00:05Z"
    mixed = ["2026-01-31 12:00:05.000007", None, datetime(2026, 2, 1, 0, 0, 1)]
    assert stamp.wire_many(mixed) == [stamp.wire(v) for v in mixed]


def test_a_column_of_values_is_shown_as_each_value_alone():
    cases: list[tuple[Any, list[Any]]] = [
        (Timestamp(), [datetime(2026, 1, 31, 12, 0, 5), None, datetime(2026, 2, 1, tzinfo=UTC)]),
        (Tags(), [["a", "b"], None, []]),
        (ListOf(Uuid()), [["a"], None, []]),
        (ListOf(Ip()), [[ipaddress.ip_address("::1")], None]),
        (Ip(), [ipaddress.ip_address("10.0.0.1"), None]),
        (Record({"ip_address": Ip()}), [{"ip_address": ipaddress.ip_address("10.0.0.2")}]),
    ]
    for kind, values in cases:
        assert kind.wire_many(values) == [kind.wire(v) for v in values], kind
    assert Timestamp().wire_many([datetime(2026, 1, 31, 12, 0, 5, 7)]) == ["2026-01-31T12:00:05Z"]
    stored = ["a"]
    assert Tags().wire_many([stored])[0] is not stored  # a new list: the stored one is left alone


def test_a_timestamp_is_shown_in_utc_seconds_with_z_naive_or_aware():
    stamp = Timestamp()
    assert stamp.wire(datetime(2026, 1, 31, 12, 0, 5, 999)) == "2026-01-31T12:00:05Z"
    assert stamp.wire(datetime(2026, 1, 31, 12, 0, 5, 999999)) == "2026-01-31T12:00:05Z"  # cut, not rounded
    assert stamp.wire(datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02T03:04:05Z"
    assert stamp.wire(datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC)) == "2026-01-31T12:00:05Z"
    assert stamp.wire(None) is None


def test_a_record_converts_the_keys_whose_kind_says_so_and_keeps_the_rest():
    fixed_ip = Record({"subnet_id": Uuid(), "ip_address": Ip()})
    stored = {"subnet_id": "s-1", "ip_address": ipaddress.ip_address("10.0.0.5"), "other": 7}
    assert fixed_ip.wire(stored) == {"subnet_id": "s-1", "ip_address": "10.0.0.5", "other": 7}
    assert stored["ip_address"] == ipaddress.ip_address("10.0.0.5")  # the value itself is left as it was
    assert fixed_ip.wire({"subnet_id": "s-1"}) == {"subnet_id": "s-1"}
    assert not fixed_ip.shown_as_stored and Record({"id": Uuid()}).shown_as_stored


def test_a_list_is_a_new_list_of_its_items_wire_forms():
    ids = ["a", "b"]
    shown = ListOf(Uuid()).wire(ids)
    assert shown == ids and shown is not ids
    assert ListOf(Uuid()).wire(None) == []
    assert ListOf(Ip()).wire([ipaddress.ip_address("::1")]) == ["::1"]


class _Recorder:
    def __init__(self, embedded: bool) -> None:
        self.embedded = embedded
        self.threads: list[threading.Thread] = []

    def run(self, fn: Any, *, write: bool = True) -> str:
        assert write is False
        self.threads.append(threading.current_thread())
        return "read"


@pytest.mark.parametrize("embedded", [True, False], ids=["sqlite", "networked"])
def test_a_read_runs_on_the_event_loop_only_on_an_embedded_database(embedded):
    db = _Recorder(embedded)

    async def request() -> tuple[str, threading.Thread]:
        return await read(db, lambda u: u), threading.current_thread()  # type: ignore[arg-type]

    answer, loop_thread = asyncio.run(request())
    assert answer == "read"
    assert (db.threads[0] is loop_thread) is embedded


def test_fields_read_only_what_they_name():
    """``fields=id,name`` does not read a relationship it leaves out (no lazy load per row of a page)."""

    class Unloaded:
        def __getattr__(self, name: str) -> Any:
            if name == "fixed_ips":
                raise AssertionError("fixed_ips was read though not asked for")
            return None

    definition = next(m.DEFINITION for m in discover() if m.DEFINITION.singular == "port")
    assert render(definition, Unloaded(), ["id", "name"]) == {"id": None, "name": None}
