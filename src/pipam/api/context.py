"""Per-request context: the process's Database and who is calling."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from pipam.errors import HeldInProcess, HTTPUnauthorized, NotNow
from pipam.service.database import Database, UnitOfWork
from pipam.service.policy import Caller

T = TypeVar("T")


def database_of(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def caller_of(request: Request) -> Caller:
    """No token configured: anyone, scoped by X-Project-Id. Otherwise the token decides.

    Every resource endpoint calls this first, before it reads the body (tests/api/test_route_authentication.py
    holds each route to it). A router dependency did the same at a cost: FastAPI's solving of one more
    dependency was a twentieth of a GET of a network inside the app."""
    cached = getattr(request.state, "caller", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    settings = database_of(request).settings
    header_project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id") or ""
    caller = None
    if not settings.api_token and not settings.project_tokens:
        caller = Caller(project_id=header_project)
    else:
        token = request.headers.get("x-auth-token") or ""
        if token and settings.api_token and hmac.compare_digest(token.encode(), settings.api_token.encode()):
            caller = Caller(project_id=header_project)
        else:
            for candidate, project in settings.project_tokens.items():
                if token and hmac.compare_digest(token.encode(), candidate.encode()):
                    caller = Caller(project_id=project, restricted=True)
    if caller is None:
        raise HTTPUnauthorized("Authentication required: send a valid X-Auth-Token.")
    request.state.caller = caller
    return caller


async def write(db: Database, fn: Callable[[UnitOfWork], T]) -> T:
    """A change of one resource. On SQLite it is first tried on the event loop, which saves the hand-over
    to a thread and back (0.1-0.3 ms of a 2.3-2.5 ms port create over HTTP, bench/README.md). It runs
    there only if it needs no wait: the write lock free at once, no rerun, a backend in the database;
    otherwise it is rolled back untouched and runs in the thread pool as any change does.

    When only another change of this process holds the lock, the loop awaits its end and tries again,
    up to ``NOW_TRIES`` times. Handed to the pool instead, it would hold the lock there in turn, the
    next change would meet it and follow, and under steady concurrent writes most of them ended up in
    the pool, at a third more CPU each (``pipam.db.write_lock``)."""
    if db.embedded:
        for _ in range(NOW_TRIES):
            try:
                return db.run_now(fn)
            except HeldInProcess:
                await db.writes_released()
            except NotNow:
                break
    return await run_in_threadpool(db.run, fn)


# A change that keeps losing the freed lock to threads already waiting for it joins them in the pool.
NOW_TRIES = 4


async def read(db: Database, fn: Callable[[UnitOfWork], T]) -> T:
    """A read-only transaction. On SQLite it runs on the event loop: the database is in this process,
    a WAL reader never waits for a lock, and handing the read to a thread costs about what the read
    does. Over a network the read waits on the server, so it runs in the thread pool."""
    if db.embedded:
        return db.run(fn, write=False)
    return await run_in_threadpool(db.run, fn, write=False)
