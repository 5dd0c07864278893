"""The service layer as a client sees it, without HTTP: request bodies in, wire-format dicts out.

Used by tests and benchmarks that want the API's validation and rendering at in-process speed.
"""

from __future__ import annotations

from typing import Any

from pipam.api import resources
from pipam.api.rendering import render
from pipam.ipam import state
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.migration.compare import Comparison
from pipam.migration.verify import verify
from pipam.service import availability
from pipam.service.database import Database, UnitOfWork
from pipam.service.policy import ADMIN, Caller
from pipam.service.resources import ResourceModule, discover

_MODULES: dict[str, ResourceModule] = {}


def module(kind: str) -> ResourceModule:
    """A resource's module by singular or plural name (network, networks, ...)."""
    if not _MODULES:
        for m in discover():
            _MODULES[m.DEFINITION.singular] = _MODULES[m.DEFINITION.plural] = m
    return _MODULES[kind]


def create(u: UnitOfWork, kind: str, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    m = module(kind)
    req = m.DEFINITION.create_request(body)
    return render(m.DEFINITION, m.create(u, req, caller), caller=caller)


def create_many(u: UnitOfWork, kind: str, bodies: list[dict[str, Any]], caller: Caller = ADMIN) -> list[dict[str, Any]]:
    """A bulk create, as ``POST /v2.0/<plural>`` with a list runs it."""
    m = module(kind)
    return resources.create_many(u, m, [m.DEFINITION.create_request(b) for b in bodies], caller)


def update(u: UnitOfWork, kind: str, item_id: str, body: dict[str, Any], caller: Caller = ADMIN) -> dict[str, Any]:
    m = module(kind)
    req = m.DEFINITION.update_request(body)
    return render(m.DEFINITION, m.update(u, item_id, req, caller), caller=caller)


def delete(u: UnitOfWork, kind: str, item_id: str, caller: Caller = ADMIN) -> None:
    module(kind).delete(u, item_id, caller)


def action(u: UnitOfWork, kind: str, name: str, item_id: str, body: Any, caller: Caller = ADMIN) -> dict[str, Any]:
    """A member action of the resource (e.g. a subnet pool's ``add_prefixes``), answered as the API does."""
    m = module(kind)
    declared = next(a for a in m.DEFINITION.actions if a.name == name)
    return render(m.DEFINITION, getattr(m, name)(u, item_id, body, caller), declared.response)


def active_driver(u: UnitOfWork) -> IpamDriver:
    """The active backend's driver in this transaction, for reading what it holds."""
    cls, settings = u.db.backend(state.read(u.session).active)
    return cls(DriverContext(u.session, settings, u.tx.on_rollback))


class LocalClient:
    """One transaction per call, like one API request each."""

    def __init__(self, db: Database, caller: Caller = ADMIN) -> None:
        self.db = db
        self.caller = caller

    def create(self, kind: str, **body: Any) -> dict[str, Any]:
        return self.db.run(lambda u: create(u, kind, body, self.caller))

    def update(self, kind: str, item_id: str, **body: Any) -> dict[str, Any]:
        return self.db.run(lambda u: update(u, kind, item_id, body, self.caller))

    def delete(self, kind: str, item_id: str) -> None:
        self.db.run(lambda u: module(kind).delete(u, item_id, self.caller))

    def show(self, kind: str, item_id: str) -> dict[str, Any]:
        m = module(kind)
        return self.db.run(
            lambda u: render(m.DEFINITION, m.get(u, item_id, self.caller), caller=self.caller), write=False
        )

    def verify(self) -> Comparison:
        """``pipam ipam verify`` of the active backend."""
        return self.db.run(lambda u: verify(u.session, active_driver(u)), write=False, snapshot=True)

    def availability(self, network_id: str) -> dict[str, Any]:
        return self.db.run(
            lambda u: render(availability.DEFINITION, availability.show(u, network_id, self.caller)), write=False
        )
