"""The private Nautobot fixture and the REST client of the Nautobot driver, against a real Nautobot."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator

import pytest

from pipam.ipam.drivers.nautobot.client import (
    Conflict,
    NautobotClient,
    NotFound,
    Prefix,
    PrefixFull,
    Unavailable,
)
from tests.nautobot_server import NautobotServer

pytestmark = [pytest.mark.nautobot, pytest.mark.slow, pytest.mark.xdist_group("nautobot")]

_networks = itertools.count(1)


@pytest.fixture
def client(nautobot_server: NautobotServer) -> Iterator[NautobotClient]:
    # Generous: a bulk create of 100 takes seconds, more when another worker's Nautobot shares the CPU.
    with NautobotClient(nautobot_server.url, nautobot_server.token, timeout=60) as c:
        yield c


@pytest.fixture
def ids(client: NautobotClient) -> dict[str, str]:
    return {"namespace": client.namespace("Global")["id"], "status": client.status_id("Active")}


def new_prefix(client: NautobotClient, ids: dict[str, str], length: int) -> Prefix:
    """A prefix no other test uses (the server lives for the whole session)."""
    n = next(_networks)
    return client.create_prefix(f"10.{n // 256}.{n % 256}.0/{length}", ids["namespace"], ids["status"])


def drop(client: NautobotClient, prefix: Prefix) -> None:
    client.bulk_delete_ips([ip["id"] for ip in client.ips_of_prefix(prefix["id"])])
    client.delete_prefix(prefix["id"])


def test_server_and_lookups(nautobot_server: NautobotServer, client: NautobotClient) -> None:
    assert client.status()["nautobot-version"] == nautobot_server.version
    assert client.namespace("Global")["name"] == "Global"
    with pytest.raises(NotFound):
        client.namespace("no-such-namespace")
    with pytest.raises(NotFound):
        client.get_prefix(str(uuid.uuid4()))
    # ensure_* finds what it made before instead of making it twice
    assert client.ensure_tag("pipam") == client.ensure_tag("pipam")
    assert client.ensure_role("pipam-port") == client.ensure_role("pipam-port")
    assert client.ensure_custom_field("pipam_port_id", "Pipam port") == client.ensure_custom_field(
        "pipam_port_id", "Pipam port"
    )


def test_allocate_until_full(client: NautobotClient, ids: dict[str, str]) -> None:
    prefix = new_prefix(client, ids, 29)
    net = prefix["prefix"].rsplit(".", 1)[0]
    try:
        assert client.find_prefix(prefix["prefix"], ids["namespace"])["id"] == prefix["id"]  # type: ignore[index]
        got = [client.allocate_next(prefix["id"], ids["status"])[0] for _ in range(6)]
        # The lowest free address each time; network and broadcast addresses are not handed out.
        assert [ip["address"] for ip in got] == [f"{net}.{i}/29" for i in range(1, 7)]
        assert all(ip["parent"]["id"] == prefix["id"] for ip in got)
        with pytest.raises(PrefixFull):
            client.allocate_next(prefix["id"], ids["status"])
        client.delete_ip(got[2]["id"])
        assert client.allocate_next(prefix["id"], ids["status"])[0]["host"] == f"{net}.3"
    finally:
        drop(client, prefix)


def test_allocate_within_range(client: NautobotClient, ids: dict[str, str]) -> None:
    prefix = new_prefix(client, ids, 28)
    net = prefix["prefix"].rsplit(".", 1)[0]
    try:
        got = client.allocate_next(prefix["id"], ids["status"], count=3, start=f"{net}.9", end=f"{net}.11")
        assert [ip["host"] for ip in got] == [f"{net}.{i}" for i in (9, 10, 11)]
        with pytest.raises(PrefixFull):
            client.allocate_next(prefix["id"], ids["status"], start=f"{net}.9", end=f"{net}.11")
    finally:
        drop(client, prefix)


def test_specific_address_and_duplicate(client: NautobotClient, ids: dict[str, str]) -> None:
    prefix = new_prefix(client, ids, 29)
    net = prefix["prefix"].rsplit(".", 1)[0]
    cf = {"custom_fields": {"pipam_port_id": "port-1"}, "description": "port-1"}
    client.ensure_custom_field("pipam_port_id", "Pipam port")
    try:
        ip = client.create_ip(f"{net}.5/29", ids["namespace"], ids["status"], **cf)
        assert (ip["host"], ip["mask_length"], ip["parent"]["id"]) == (f"{net}.5", 29, prefix["id"])
        assert ip["custom_fields"]["pipam_port_id"] == "port-1"
        with pytest.raises(Conflict):
            client.create_ip(f"{net}.5/29", ids["namespace"], ids["status"])
        # The parent and host make an address unique, not the mask length.
        with pytest.raises(Conflict):
            client.create_ip(f"{net}.5/32", ids["namespace"], ids["status"])
        found = list(client.ips_of_prefix(prefix["id"], cf_pipam_port_id="port-1"))
        assert [f["id"] for f in found] == [ip["id"]]
        # available-ips skips an address created directly
        assert [a["host"] for a in client.allocate_next(prefix["id"], ids["status"], count=5)] == [
            f"{net}.{i}" for i in (1, 2, 3, 4, 6)
        ]
    finally:
        drop(client, prefix)


def test_bulk_create_list_and_delete(client: NautobotClient, ids: dict[str, str]) -> None:
    prefix = new_prefix(client, ids, 24)
    net = prefix["prefix"].rsplit(".", 1)[0]
    body = [{"address": f"{net}.{i}/24", "namespace": ids["namespace"], "status": ids["status"]} for i in range(1, 101)]
    try:
        created = client.bulk_create_ips(body)
        assert len(created) == 100
        listed = list(client.ips_of_prefix(prefix["id"], page_size=30))  # 4 pages
        assert sorted(ip["id"] for ip in listed) == sorted(ip["id"] for ip in created)
        # All or nothing: one duplicate in a batch and none of the batch is created.
        extra = [{"address": f"{net}.{i}/24", "namespace": ids["namespace"], "status": ids["status"]} for i in (150, 1)]
        with pytest.raises(Conflict):
            client.bulk_create_ips(extra)
        assert len(list(client.ips_of_prefix(prefix["id"]))) == 100
        client.bulk_delete_ips([ip["id"] for ip in created])
        assert list(client.ips_of_prefix(prefix["id"])) == []
    finally:
        drop(client, prefix)


def test_outage(nautobot_server: NautobotServer, ids: dict[str, str]) -> None:
    """A stopped Nautobot is Unavailable at once, a hung one within the timeout; both recover."""
    with NautobotClient(nautobot_server.url, nautobot_server.token, timeout=2) as client:
        prefix = new_prefix(client, ids, 29)
        try:
            nautobot_server.stop()
            t = time.monotonic()
            with pytest.raises(Unavailable) as refused:
                client.allocate_next(prefix["id"], ids["status"])
            assert not refused.value.maybe_applied  # nothing was sent
            assert time.monotonic() - t < 2
            nautobot_server.start()
            assert client.allocate_next(prefix["id"], ids["status"])[0]["address"].endswith(".1/29")

            nautobot_server.freeze()
            t = time.monotonic()
            try:
                with pytest.raises(Unavailable) as hung:
                    client.allocate_next(prefix["id"], ids["status"])
                assert hung.value.maybe_applied  # sent, no answer: the caller cannot know
                assert 1.5 < time.monotonic() - t < 4
            finally:
                nautobot_server.thaw()
            # The hung request is still queued and Nautobot may now carry it out, racing the next call
            # (nautobot#8297): the lost race is a Conflict, and trying again works.
            for _ in range(20):
                try:
                    got = client.allocate_next(prefix["id"], ids["status"])[0]["host"]
                    break
                except Conflict:
                    time.sleep(0.1)
            net = prefix["prefix"].rsplit(".", 1)[0]
            held = sorted(ip["host"] for ip in client.ips_of_prefix(prefix["id"]))
            assert held in ([f"{net}.1", f"{net}.2"], [f"{net}.1", f"{net}.2", f"{net}.3"])
            assert got in held
        finally:
            nautobot_server.start()  # no-op unless an assertion above left it stopped
            drop(client, prefix)
