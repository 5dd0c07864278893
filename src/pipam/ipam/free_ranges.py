"""Free address ranges in a table: the structure that keeps allocation cost independent of fill.

Each row is one run of free addresses ``[first_key, last_key]`` of one pool. Finding a free address is
one index lookup (the first range ending at or after a random point), and claiming it is a
compare-and-swap on that row, so concurrent servers never need a lock wider than one range and a
lost race costs one more lookup. IPv6 pools of any size are a single row, never enumerated.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, String, Table, bindparam, delete, exists, insert, select, update
from sqlalchemy.orm import Session

from pipam.db.engine import changes_in_with, one_writer
from pipam.errors import RetryTransaction
from pipam.ipam.addr import to_key
from pipam.ipam.range_lookup import RangeLookup

CLAIM_ATTEMPTS = 16

_rng = random.SystemRandom()


class ClaimStats:
    """Claims of this process that lost their compare-and-swap (another transaction changed the range
    between the lookup and the claim), retried with a new lookup. Benchmarks report it."""

    lost = 0


claims = ClaimStats()


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


@dataclass
class FoundValues:
    """Where given values lie among an owner's free ranges (``RangeStore.find_values``)."""

    ranges: dict[int, _Range] = field(default_factory=dict)  # by id: each range holding some of them
    inside: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))  # range id -> values
    missing: set[int] = field(default_factory=set)  # values no free range holds


class RangeStore:
    """Free ranges of one table, grouped by an owner column (the subnet).

    The statements of the allocation path are built once, with bind parameters: building SQLAlchemy
    expressions per call cost more than the database work they describe.
    """

    def __init__(self, table: Table, owner_column: str) -> None:
        self.table = table
        self.owner = table.c[owner_column]
        self.c = c = table.c
        cols = select(c.id, c.pool_id, c.first_key, c.last_key).where(self.owner == bindparam("owner"))
        self._at_or_after = cols.where(c.last_key >= bindparam("key")).order_by(c.last_key).limit(1)
        self._lowest = cols.order_by(c.first_key).limit(1)
        self._lookup = RangeLookup(table, self.owner)
        guard = (c.id == bindparam("rid"), c.first_key == bindparam("old_first"), c.last_key == bindparam("old_last"))
        self._drop = delete(table).where(*guard)
        self._move_first = update(table).where(*guard).values(first_key=bindparam("new_key"))
        self._move_last = update(table).where(*guard).values(last_key=bindparam("new_key"))
        self._columns = [self.owner.key, c.pool_id.key, c.first_key.key, c.last_key.key]  # of a row, in order
        # The same cut and the insert of the part above it, as one statement where WITH may change rows:
        # the insert reads the row the update returns, so a lost compare-and-swap inserts nothing.
        cut = self._move_last.returning(self.owner, c.pool_id).cte("cut")
        upper = (bindparam("upper_first", type_=String), bindparam("upper_last", type_=String))
        # (SQLAlchemy keeps an insert's row count only when asked.)
        self._split = (
            insert(table)
            .from_select(self._columns, select(cut.c[self.owner.key], cut.c.pool_id, *upper))
            .execution_options(preserve_rowcount=True)
        )
        new_bounds = {"first_key": bindparam("new_first"), "last_key": bindparam("new_last")}
        self._reshape = update(table).where(*guard).values(new_bounds)
        same_pool = (self.owner == bindparam("owner"), c.pool_id == bindparam("pool"))
        # Distinct edge names: the one-statement give-back below holds both updates.
        self._grow_left = (
            update(table).where(*same_pool, c.last_key == bindparam("left_edge")).values(last_key=bindparam("new_key"))
        )
        self._grow_right = (
            update(table)
            .where(*same_pool, c.first_key == bindparam("right_edge"))
            .values(first_key=bindparam("new_key"))
        )
        self._add = insert(table)
        self._give_back_at_once = self._give_back_statement()

    def _give_back_statement(self) -> Any:
        """``give_back``'s three tries as one statement, for where WITH may change rows: grow the range
        ending below the value, else grow the one starting above it, else insert the value alone."""
        c, key = self.c, bindparam("new_key", type_=String)
        left = self._grow_left.returning(c.id).cte("grown_left")
        right = self._grow_right.where(~exists(select(left.c.id))).returning(c.id).cte("grown_right")
        alone = select(bindparam("owner", type_=String), bindparam("pool", type_=String), key, key)
        return insert(self.table).from_select(
            self._columns, alone.where(~exists(select(left.c.id)), ~exists(select(right.c.id)))
        )

    # --- reads ---------------------------------------------------------------------------------

    def _row(self, session: Session, stmt: Select[tuple[int, str, str, str]], **params: str) -> _Range | None:
        return _range_of(session.connection().execute(stmt, params).first())

    def _containing(self, session: Session, owner_id: str, value: int) -> _Range | None:
        """The range ``value`` would lie in: the one starting nearest at or below it (it may end below)."""
        return _range_of(self._lookup.containing(session.connection(), owner_id, to_key(value)))

    def is_free(self, session: Session, owner_id: str, value: int) -> bool:
        rng = self._containing(session, owner_id, value)
        return rng is not None and rng.last >= value

    def ranges(self, session: Session, owner_id: str) -> list[tuple[int, int]]:
        rows = session.execute(
            select(self.c.first_key, self.c.last_key).where(self.owner == owner_id).order_by(self.c.first_key)
        )
        return [(int(a, 16), int(b, 16)) for a, b in rows]

    def ranges_by_owner(self, session: Session, owner_ids: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
        """The ranges of several owners, each ordered by first address, as stored (overlaps kept);
        an owner with no range is absent. One query per 500 owners."""
        found: dict[str, list[tuple[int, int]]] = {}
        ids = list(owner_ids)
        for start in range(0, len(ids), 500):
            rows = session.connection().execute(
                select(self.owner, self.c.first_key, self.c.last_key)
                .where(self.owner.in_(ids[start : start + 500]))
                .order_by(self.owner, self.c.first_key)
            )
            for owner, a, b in rows:
                found.setdefault(owner, []).append((int(a, 16), int(b, 16)))
        return found

    # --- claiming ------------------------------------------------------------------------------

    def take_many(
        self, session: Session, owner_id: str, lo: int, hi: int, count: int, lowest: bool = False
    ) -> list[int]:
        """Claim ``count`` free addresses (one for an "any address" request), a contiguous run of each
        range at a time: from a random point (``lowest``: from the smallest) upwards, wrapping around to
        the lowest range; on a database with one writer at a time (``one_writer``) from the start of the
        range the point lands in. A lost claim is retried with a new lookup, from a new random point.

        Answers exactly ``count`` values, or [] when fewer are free: a bulk request is all or none, and
        its caller may go on to another subnet in the same transaction, so what this call took is given
        back first.
        """
        taken: list[int] = []
        runs: list[tuple[str, int, int]] = []  # (pool, first, last) of each claimed run, to give back
        point = None if lowest else _rng.randint(lo, hi)
        # Claiming at the point splits its range (an update and an insert) so that concurrent servers
        # claim apart. With one writer nothing is gained by that: taking the range's start is one
        # update, and the table keeps a row per run of free addresses instead of gaining one per claim.
        from_start = one_writer(session.connection())
        lost = 0
        while len(taken) < count:
            rng = None
            if point is not None:
                rng = self._row(session, self._at_or_after, owner=owner_id, key=to_key(point))
                if rng is None:  # nothing at or after the point: wrap around to the lowest range
                    point = None
            if rng is None:
                rng = self._row(session, self._lowest, owner=owner_id)
            if rng is None:  # the store is empty now: fewer were free than asked
                self._give_back_runs(session, owner_id, runs)
                return []
            first = rng.first if point is None or from_start else max(point, rng.first)
            last = min(rng.last, first + count - len(taken) - 1)
            if not rng.first <= first <= last <= rng.last:
                raise AssertionError(f"free-range claim {first}-{last} outside {rng}")
            if not self._claim(session, owner_id, rng, first, last):
                claims.lost += 1
                lost += 1
                if lost >= CLAIM_ATTEMPTS:
                    raise RetryTransaction("free-range claims kept losing races")
                if not lowest:  # away from where another server is claiming
                    point = _rng.randint(lo, hi)
                continue
            runs.append((rng.pool_id, first, last))
            taken.extend(range(first, last + 1))
            if point is not None:
                point = last + 1  # the next range up; below the first point comes after the wrap
        return taken

    def take_specific(self, session: Session, owner_id: str, value: int) -> bool:
        """Claim ``value`` if it is free; False when no free range holds it."""
        for _ in range(CLAIM_ATTEMPTS):
            rng = self._containing(session, owner_id, value)
            if rng is None or rng.last < value:
                return False
            if self._claim(session, owner_id, rng, value):
                return True
            claims.lost += 1
        raise RetryTransaction("free-range claims kept losing races")

    def _claim(self, session: Session, owner_id: str, rng: _Range, first: int, last: int | None = None) -> bool:
        """Remove ``first``..``last`` (one value when ``last`` is None) from ``rng`` if the row is still
        exactly as read (compare-and-swap): one guarded statement, and an insert of the part above the
        run when the run lies inside the range (on PostgreSQL both in one statement)."""
        last = first if last is None else last
        conn = session.connection()
        guard = {"rid": rng.id, "old_first": to_key(rng.first), "old_last": to_key(rng.last)}
        if first == rng.first and last == rng.last:
            return conn.execute(self._drop, guard).rowcount == 1
        if first == rng.first:
            return conn.execute(self._move_first, {**guard, "new_key": to_key(last + 1)}).rowcount == 1
        if last < rng.last and changes_in_with(conn):
            upper = {"upper_first": to_key(last + 1), "upper_last": to_key(rng.last)}
            return conn.execute(self._split, {**guard, "new_key": to_key(first - 1), **upper}).rowcount == 1
        if conn.execute(self._move_last, {**guard, "new_key": to_key(first - 1)}).rowcount != 1:
            return False
        if last < rng.last:
            self._insert(session, [(owner_id, rng.pool_id, last + 1, rng.last)])
        return True

    def find_values(self, session: Session, owner_id: str, values: Sequence[int]) -> FoundValues:
        """The free range holding each of ``values``, looked up together (``RangeLookup.containing_each``);
        nothing is claimed yet."""
        found = FoundValues()
        unique = list(dict.fromkeys(values))
        rows = self._lookup.containing_each(session.connection(), owner_id, [to_key(v) for v in unique])
        ranges = sorted({rng for rng in map(_range_of, rows) if rng is not None}, key=lambda r: r.first)
        overlap = any(a.last >= b.first for a, b in itertools.pairwise(ranges))
        if overlap or len({rng.id for rng in ranges}) != len(ranges):
            # Another transaction changed a range between two of the lookup's statements: answered in two
            # forms (which need not overlap after a shrink and a growth), or in one form next to a piece cut
            # from it. A value found in an older form may lie outside the newer one, and a claim by the
            # newer form would leave it free while it is recorded as held.
            claims.lost += 1
            raise RetryTransaction("a free range changed while a bulk looked up its addresses")
        firsts = [rng.first for rng in ranges]
        for value in unique:
            at = bisect.bisect_right(firsts, value) - 1
            if at < 0 or ranges[at].last < value:
                found.missing.add(value)
                continue
            found.ranges[ranges[at].id] = ranges[at]
            found.inside[ranges[at].id].append(value)
        return found

    def claim_values(self, session: Session, owner_id: str, found: FoundValues) -> None:
        """Claim the values ``find_values`` found free (none may be missing): each range they lie in
        shrinks to its first free piece or goes, guarded as in ``_claim``, one statement for all of them,
        and the other pieces are inserted in one. A range another transaction changed since the lookup
        reruns the transaction (RetryTransaction): what this one changed so far cannot be undone apart."""
        if found.missing:
            raise AssertionError(f"claim of values no free range holds: {sorted(found.missing)[:3]}")
        shrunk: list[dict[str, str | int]] = []
        gone: list[dict[str, str | int]] = []
        pieces: list[tuple[str, str, int, int]] = []
        for rid, values in found.inside.items():
            rng = found.ranges[rid]
            guard: dict[str, str | int] = {"rid": rid, "old_first": to_key(rng.first), "old_last": to_key(rng.last)}
            left = subtract([(rng.first, rng.last)], [(v, v) for v in values])
            if not left:
                gone.append(guard)
                continue
            (first, last), rest = left[0], left[1:]
            shrunk.append({**guard, "new_first": to_key(first), "new_last": to_key(last)})
            pieces += [(owner_id, rng.pool_id, a, b) for a, b in rest]
        conn = session.connection()
        changed = 0
        for stmt, rows in ((self._reshape, shrunk), (self._drop, gone)):
            if rows:
                changed += conn.execute(stmt, rows).rowcount  # each dialect here sums an executemany's
        if changed != len(shrunk) + len(gone):
            claims.lost += 1
            raise RetryTransaction("a bulk claim of free ranges lost a race")
        self._insert(session, pieces)

    # --- giving back ---------------------------------------------------------------------------

    def give_back(self, session: Session, owner_id: str, pool_id: str, value: int) -> None:
        """Return ``value`` to its pool, joining it to a neighbouring range when there is one (on
        PostgreSQL with one statement, elsewhere with up to three)."""
        conn = session.connection()
        params = {"owner": owner_id, "pool": pool_id, "new_key": to_key(value)}
        params.update(left_edge=to_key(value - 1), right_edge=to_key(value + 1))
        if changes_in_with(conn):
            conn.execute(self._give_back_at_once, params)
            return
        if conn.execute(self._grow_left, params).rowcount == 1:
            return
        if conn.execute(self._grow_right, params).rowcount == 1:
            return
        self._insert(session, [(owner_id, pool_id, value, value)])

    def _give_back_runs(self, session: Session, owner_id: str, runs: list[tuple[str, int, int]]) -> None:
        """Return the runs a ``take_many`` claimed before it found the store empty: with no range left to
        join, they go back as rows of their own, adjacent runs of a pool joined: one insert."""
        merged: list[tuple[str, int, int]] = []
        for pool_id, first, last in sorted(runs, key=lambda r: r[1]):
            if merged and merged[-1][0] == pool_id and merged[-1][2] + 1 == first:
                merged[-1] = (pool_id, merged[-1][1], last)
            else:
                merged.append((pool_id, first, last))
        self._insert(session, [(owner_id, pool_id, first, last) for pool_id, first, last in merged])

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
        session.connection().execute(
            self._add,
            [{owner_name: o, "pool_id": p, "first_key": to_key(a), "last_key": to_key(b)} for o, p, a, b in rows],
        )


def _range_of(row: Any) -> _Range | None:
    return None if row is None else _Range(row.id, row.pool_id, int(row.first_key, 16), int(row.last_key, 16))


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
