"""What a server says at start-up that an operator must know."""

from __future__ import annotations

import logging

from pipam.errors import PipamError
from pipam.ipam import state
from pipam.service.bootstrap import schema_status
from pipam.service.database import Database


def startup_report(database: Database) -> list[tuple[int, str]]:
    """(log level, message) lines: an old schema, a backend this server cannot use, a deprecated one."""
    lines: list[tuple[int, str]] = []
    try:
        status = schema_status(database.engine)
        if not status.is_current:
            return [(logging.ERROR, f"database schema is {status.describe()}")]
        active = database.run(lambda u: state.read(u.session), write=False).active
        cls, _ = database.backend(active)
    except PipamError as exc:
        return [(logging.ERROR, exc.message)]
    except Exception as exc:  # the database is away: requests will say so (503) until it is back
        return [
            (logging.ERROR, f"database check at start-up failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        ]
    if cls.deprecated:
        lines.append(
            (logging.WARNING, f"IPAM backend {active!r} is deprecated; migrate with 'pipam ipam migrate --to internal'")
        )
    return lines
