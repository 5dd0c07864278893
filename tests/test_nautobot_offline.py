"""The Nautobot driver without a Nautobot: its settings, and an unreachable server answering 503."""

from __future__ import annotations

import pytest

from pipam.api.errors import status_of
from pipam.config import load_settings
from pipam.errors import ExternalIpamUnavailable, IpamDriverNotFound, PipamError
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
