"""Short calls into the service layer for tests: bodies as a client sends them, dicts as it sees them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from pipam.api.errors import status_of
from pipam.errors import PipamError
from pipam.migration.progress import Silent
from pipam.service.database import Database
from pipam.testing.local import LocalClient


@contextmanager
def statements_sent(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Each statement ``db`` sends inside the block, with its parameters, in order."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def statement_sent(db: Database, run: Callable[[], Any], starts: str, first_of_many: bool = False) -> tuple[str, Any]:
    """The one statement starting with ``starts`` that ``run`` sends, with its parameters; with
    ``first_of_many``, the first of them (a bulk's MAC check asks again, for the MACs still missing, when
    two of its 1,000 draws coincide: about 3 % of bulks of 1,000)."""
    with statements_sent(db) as sent:
        run()
    found = [(s, p) for s, p in sent if s.startswith(starts)]
    if first_of_many:
        assert found
        return found[0]
    ((one),) = found
    return one


@contextmanager
def records_of(logger: str, level: int | str = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """The records ``logger`` (and its children) emit inside the block, at ``level`` and above.

    Not caplog: its handler sits on the root logger, which pipam's records never reach once
    ``configure_logging`` (run by every in-process app) has made the ``pipam`` logger stop propagating.
    pytest 9.2 also attaches caplog to loggers that already do not propagate, but the versions Pipam's
    pin allows before it do not, so whether a test saw its records depended on what ran before it in
    the same worker."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    target = logging.getLogger(logger)
    handler = Collect(level)
    before = target.level
    target.addHandler(handler)
    if target.getEffectiveLevel() > handler.level:
        target.setLevel(handler.level)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.setLevel(before)


def net(db: Database, **body: Any) -> dict[str, Any]:
    return LocalClient(db).create("network", **{"name": "net", **body})


def subnet(db: Database, network_id: str, cidr: str | None = None, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"network_id": network_id, **body}
    if cidr is not None:
        payload["cidr"] = cidr
        payload.setdefault("ip_version", 6 if ":" in cidr else 4)
    return LocalClient(db).create("subnet", **payload)


def port(db: Database, network_id: str, **body: Any) -> dict[str, Any]:
    return LocalClient(db).create("port", network_id=network_id, **body)


def update_port(db: Database, port_id: str, **body: Any) -> dict[str, Any]:
    return LocalClient(db).update("port", port_id, **body)


def delete_port(db: Database, port_id: str) -> None:
    LocalClient(db).delete("port", port_id)


def update_subnet(db: Database, subnet_id: str, **body: Any) -> dict[str, Any]:
    return LocalClient(db).update("subnet", subnet_id, **body)


def delete_subnet(db: Database, subnet_id: str) -> None:
    LocalClient(db).delete("subnet", subnet_id)


def pool(db: Database, **body: Any) -> dict[str, Any]:
    return LocalClient(db).create("subnetpool", **body)


def avail(db: Database, network_id: str) -> dict[str, Any]:
    return LocalClient(db).availability(network_id)


def ips(port_dict: dict[str, Any]) -> list[str]:
    return [f["ip_address"] for f in port_dict["fixed_ips"]]


class Refused:
    """An error as a client sees it: status and type."""

    def __init__(self, exc: PipamError) -> None:
        self.exc = exc
        self.status = status_of(exc)
        self.type = exc.type
        self.message = exc.message


def error_of(fn) -> Refused:  # type: ignore[no-untyped-def]
    with pytest.raises(PipamError) as info:
        fn()
    return Refused(info.value)


class AtCheckpoint(Silent):
    """A migration observer that runs ``action`` when the run reports the checkpoint ``point``."""

    def __init__(self, point: str, action: Callable[[], None]) -> None:
        self.point, self.action = point, action

    def checkpoint(self, name: str) -> None:
        if name == self.point:
            self.action()


def interrupt() -> None:
    """What an operator's Ctrl-C does to a run."""
    raise KeyboardInterrupt


def stop_at(point: str) -> AtCheckpoint:
    return AtCheckpoint(point, interrupt)
