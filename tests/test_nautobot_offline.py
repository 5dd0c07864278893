"""The Nautobot driver without a Nautobot: its settings, and an unreachable server answering 503."""

from __future__ import annotations

import netaddr
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipam.api.errors import status_of
from pipam.config import load_settings
from pipam.errors import ExternalIpamUnavailable, IpamDriverNotFound, PipamError
from pipam.ipam.drivers.nautobot.driver import NautobotSubnet
from pipam.ipam.registry import driver_settings, load_driver
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.local import LocalClient
from tests.server import free_port


def test_settings_are_checked_with_the_setting_named() -> None:
    cls = load_driver("nautobot")
    with pytest.raises(IpamDriverNotFound, match=r"drivers\.nautobot\.url"):
        driver_settings(cls, {})
    with pytest.raises(IpamDriverNotFound, match=r"drivers\.nautobot\.url: .*http"):
        driver_settings(cls, {"nautobot": {"url": "nautobot.example", "token": "t"}})
    with pytest.raises(IpamDriverNotFound, match=r"drivers\.nautobot\.timeout"):
        driver_settings(cls, {"nautobot": {"url": "https://n.example", "token": "t", "timeout": 0}})
    settings = driver_settings(cls, {"nautobot": {"url": "https://n.example/", "token": "secret"}})
    assert settings.url == "https://n.example" and settings.namespace == "Global" and "secret" not in repr(settings)


def test_unreachable_nautobot_is_a_503_and_leaves_pipam_readable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIPAM_DRIVERS__NAUTOBOT__URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("PIPAM_DRIVERS__NAUTOBOT__TOKEN", "0" * 40)
    db = Database(load_settings(database_url=f"sqlite:///{tmp_path}/p.db", ipam_driver="nautobot"))
    upgrade_database(db.engine, "nautobot")
    client = LocalClient(db)
    network = client.create("network", name="n")
    with pytest.raises(PipamError) as refused:
        client.create("subnet", network_id=network["id"], cidr="10.0.0.0/24", ip_version=4)
    assert isinstance(refused.value, ExternalIpamUnavailable) and status_of(refused.value) == 503
    # Nothing half-made, and reads need no Nautobot.
    assert client.show("network", network["id"])["subnets"] == []
    db.dispose()


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(st.integers(0, 2**20), unique=True, min_size=2, max_size=12),
    share=st.floats(0.0, 1.0),
    big=st.booleans(),
)
def test_a_bulks_draw_gives_distinct_free_addresses(bounds: list[int], share: float, big: bool) -> None:
    """A bulk of any-addresses on Nautobot draws its addresses together: as many as asked, distinct, each
    in the free space, whether the space is small next to the count (drawn from its list) or large (drawn
    by offset), IPv4 or IPv6."""
    version, base = (6, 2**100) if big else (4, 0)
    edges = sorted(bounds)
    free = netaddr.IPSet(
        netaddr.IPRange(netaddr.IPAddress(base + a, version), netaddr.IPAddress(base + b, version))
        for a, b in zip(edges[::2], edges[1::2], strict=False)
    )
    count = max(1, min(int(free.size * share), 300))
    drawn = NautobotSubnet._sample(free, count)
    assert len(drawn) == len(set(drawn)) == count
    assert all(netaddr.IPAddress(v, version) in free for v in drawn)
