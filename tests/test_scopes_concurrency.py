"""Rules that concurrent requests must not slip past, on every database: one default subnet pool per
IP version, no prefix shared by two pools of an address scope."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from pipam.db.models import SubnetPool
from pipam.errors import PipamError
from pipam.testing.local import LocalClient

THREADS = 6


def race(db, make: Callable[[int], dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:  # type: ignore[no-untyped-def]
    """Run ``make(i)`` in THREADS threads released at once: what was made, and the refusals' types."""
    start = threading.Barrier(THREADS)
    made: list[dict[str, Any]] = []
    refused: list[str] = []

    def one(i: int) -> None:
        start.wait()
        try:
            made.append(make(i))
        except PipamError as exc:
            refused.append(exc.type)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return made, refused


def test_one_default_pool_per_ip_version_under_concurrency(db):
    client = LocalClient(db)
    made, refused = race(
        db,
        lambda i: client.create("subnetpool", name=f"p{i}", prefixes=[f"10.{i}.0.0/16"], is_default=True),
    )
    assert len(made) == 1 and refused == ["InvalidInput"] * (THREADS - 1)
    with db.session(write=False) as session:
        assert session.scalar(select(func.count()).where(SubnetPool.is_default.is_(True))) == 1


def test_overlapping_pools_cannot_join_a_scope_together(db):
    client = LocalClient(db)
    scope = client.create("address_scope", name="s", ip_version=4)
    pools = [client.create("subnetpool", name=f"p{i}", prefixes=["10.0.0.0/16"]) for i in range(THREADS)]
    made, refused = race(db, lambda i: client.update("subnetpool", pools[i]["id"], address_scope_id=scope["id"]))
    assert len(made) == 1 and refused == ["AddressScopePrefixConflict"] * (THREADS - 1)
