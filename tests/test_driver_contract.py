"""The driver contract suite (``pipam.testing.contract``) for every driver Pipam ships and the
third-party test driver: builtin and internal on each database, the outside one on its own store."""

from __future__ import annotations

import pytest

from pipam.testing.contract import DriverContract


class TestBuiltin(DriverContract):
    backend = "builtin"

    @pytest.fixture
    def contract_url(self, schema_url: str) -> str:
        return schema_url


class TestInternal(DriverContract):
    backend = "internal"

    @pytest.fixture
    def contract_url(self, schema_url: str) -> str:
        return schema_url


class TestThirdParty(DriverContract):
    backend = "extipam"

    @pytest.fixture(autouse=True)
    def outside_store(self, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
        monkeypatch.setenv("PIPAM_EXTIPAM_DB", str(tmp_path / "outside.db"))


@pytest.mark.nautobot
@pytest.mark.slow
@pytest.mark.xdist_group("nautobot")  # one Nautobot per session, on one worker
class TestNautobot(DriverContract):
    backend = "nautobot"

    @pytest.fixture(autouse=True)
    def namespace(self, nautobot_namespace: dict[str, str]) -> dict[str, str]:
        return nautobot_namespace
