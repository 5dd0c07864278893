"""Free address ranges in a table: the structure that keeps allocation cost independent of fill.

Each row is one run of free addresses ``[first_key, last_key]`` of one pool. Finding a free address is
one index lookup (the first range ending at or after a random point), and claiming it is a
compare-and-swap on that row, so concurrent servers never need a lock wider than one range and a
lost race costs one more lookup. IPv6 pools of any size are a single row, never enumerated.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from pipam.errors import RetryTransaction
from pipam.ipam.addr import to_key

CLAIM_ATTEMPTS = 16

_rng = random.SystemRandom()


@dataclass(frozen=True)
class PoolBounds:
    pool_id: str
    first: int
    last: int

    def __contains__(self, value: int) -> bool:
        return self.first <= value <= self.last


@dataclass(frozen=True)
class _Range:
    id: int
    pool_id: str
    first: int
    last: int


class RangeStore:
    """Free ranges of one table, grouped by an owner column (the subnet)."""

    def __init__(self, table: Table, owner_column: str) -> None:
        self.table = table
        self.owner = table.c[owner_column]
        self.c = table.c

    # --- reads ---------------------------------------------------------------------------------

    def _row(self, session: Session, stmt) -> _Range | None:  # type: ignore[no-untyped-def]
        row = session.execute(stmt.limit(1)).first()
        if row is None:
            return None
        return _Range(row.id, row.pool_id, int(row.first_key, 16), int(row.last_key, 16))

    def _cols(self):  # type: ignore[no-untyped-def]
        return select(self.c.id, self.c.pool_id, self.c.first_key, self.c.last_key)

    def ranges(self, session: Session, owner_id: str) -> list[tuple[int, int]]:
        rows = session.execute(
            select(self.c.first_key, self.c.last_key).where(self.owner == owner_id).order_by(self.c.first_key)
        )
        return [(int(a, 16), int(b, 16)) for a, b in rows]

    # --- claiming ------------------------------------------------------------------------------

    def take_any(self, session: Session, owner_id: str, lo: int, hi: int, lowest: bool = False) -> int | None:
        """Claim a free address; ``lowest`` takes the smallest, otherwise one near a random point."""
        for _ in range(CLAIM_ATTEMPTS):
            base = self._cols().where(self.owner == owner_id)
            if lowest:
                point = None
                rng = self._row(session, base.order_by(self.c.first_key))
            else:
                point = _rng.randint(lo, hi)
                rng = self._row(session, base.where(self.c.last_key >= to_key(point)).order_by(self.c.last_key))
                if rng is None:  # nothing at or after the point: wrap around to the lowest range
                    point = None
                    rng = self._row(session, base.order_by(self.c.first_key))
            if rng is None:
                return None
            value = rng.first if point is None else max(point, rng.first)
            if not rng.first <= value <= rng.last:
                raise AssertionError(f"free-range claim {value} outside {rng}")
            if self._claim(session, owner_id, rng, value):
                return value
        raise RetryTransaction("free-range claims kept losing races")

    def take_specific(self, session: Session, owner_id: str, value: int) -> bool:
        """Claim ``value`` if it is free; False when no free range holds it."""
        key = to_key(value)
        for _ in range(CLAIM_ATTEMPTS):
            rng = self._row(
                session,
                self._cols().where(self.owner == owner_id, self.c.first_key <= key).order_by(self.c.first_key.desc()),
            )
            if rng is None or rng.last < value:
                return False
            if self._claim(session, owner_id, rng, value):
                return True
        raise RetryTransaction("free-range claims kept losing races")

    def _claim(self, session: Session, owner_id: str, rng: _Range, value: int) -> bool:
        """Remove ``value`` from ``rng`` if the row is still exactly as read (compare-and-swap)."""
        guard = (
            self.c.id == rng.id,
            self.c.first_key == to_key(rng.first),
            self.c.last_key == to_key(rng.last),
        )
        if rng.first == rng.last:
            return session.execute(delete(self.table).where(*guard)).rowcount == 1
        if value == rng.first:
            stmt = update(self.table).where(*guard).values(first_key=to_key(value + 1))
            return session.execute(stmt).rowcount == 1
        stmt = update(self.table).where(*guard).values(last_key=to_key(value - 1))
        if session.execute(stmt).rowcount != 1:
            return False
        if value < rng.last:
            self._insert(session, [(owner_id, rng.pool_id, value + 1, rng.last)])
        return True

    # --- giving back ---------------------------------------------------------------------------

    def give_back(self, session: Session, owner_id: str, pool_id: str, value: int) -> None:
        """Return ``value`` to its pool, joining it to a neighbouring range when there is one."""
        key = to_key(value)
        same_pool = (self.owner == owner_id, self.c.pool_id == pool_id)
        left = update(self.table).where(*same_pool, self.c.last_key == to_key(value - 1))
        if session.execute(left.values(last_key=key)).rowcount == 1:
            return
        right = update(self.table).where(*same_pool, self.c.first_key == to_key(value + 1))
        if session.execute(right.values(first_key=key)).rowcount == 1:
            return
        self._insert(session, [(owner_id, pool_id, value, value)])

    # --- bulk ----------------------------------------------------------------------------------

    def rebuild(self, session: Session, owner_id: str, pools: Sequence[PoolBounds], allocated: Iterable[int]) -> None:
        """Replace the owner's ranges with its pools minus ``allocated``."""
        self.remove_owner(session, owner_id)
        self._insert(session, [(owner_id, p, a, b) for p, a, b in free_runs(pools, allocated)])

    def remove_owner(self, session: Session, owner_id: str) -> None:
        session.execute(delete(self.table).where(self.owner == owner_id))

    def _insert(self, session: Session, rows: list[tuple[str, str, int, int]]) -> None:
        if not rows:
            return
        owner_name = self.owner.key
        session.execute(
            insert(self.table),
            [{owner_name: o, "pool_id": p, "first_key": to_key(a), "last_key": to_key(b)} for o, p, a, b in rows],
        )


def subtract(ranges: Iterable[tuple[int, int]], holes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` minus ``holes`` (both lists of inclusive intervals): one sweep over both, sorted."""
    cut = sorted(holes)
    out: list[tuple[int, int]] = []
    j = 0
    for first, last in sorted(ranges):
        while j < len(cut) and cut[j][1] < first:
            j += 1
        start, k = first, j
        while k < len(cut) and cut[k][0] <= last:
            if cut[k][0] > start:
                out.append((start, cut[k][0] - 1))
            start = max(start, cut[k][1] + 1)
            k += 1
        if start <= last:
            out.append((start, last))
    return out


def free_runs(pools: Sequence[PoolBounds], allocated: Iterable[int]) -> list[tuple[str, int, int]]:
    """Each pool minus the allocated values, labelled with its pool."""
    points = [(v, v) for v in set(allocated)]
    return [
        (pool.pool_id, a, b)
        for pool in sorted(pools, key=lambda p: p.first)
        for a, b in subtract([(pool.first, pool.last)], points)
    ]
