"""Free blocks of subnet pools: a prefix is carved from the best-fitting free range in one lookup.

The caller holds the subnet pool's row locked, so these reads and writes need no compare-and-swap.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from pipam.db.models import SubnetPoolFreeBlock as Block
from pipam.ipam.addr import to_key

_BEST_FIT = (
    select(Block.id, Block.first_key, Block.last_key)
    .where(Block.subnetpool_id == bindparam("pool"), Block.max_block >= bindparam("bits"))
    .order_by(Block.max_block, Block.first_key)
    .limit(1)
)
_CONTAINING = (
    select(Block.id, Block.first_key, Block.last_key)
    .where(Block.subnetpool_id == bindparam("pool"), Block.first_key <= bindparam("key"))
    .order_by(Block.first_key.desc())
    .limit(1)
)


def largest_block(first: int, last: int) -> int:
    """Host bits of the largest aligned power-of-two block inside [first, last]."""
    bits = (last - first + 1).bit_length() - 1
    while bits > 0:
        step = 1 << bits
        start = -(-first // step) * step
        if start + step - 1 <= last:
            return bits
        bits -= 1
    return 0


def _row(pool_id: str, first: int, last: int) -> dict[str, object]:
    return {
        "subnetpool_id": pool_id,
        "first_key": to_key(first),
        "last_key": to_key(last),
        "max_block": largest_block(first, last),
    }


def _replace(session: Session, pool_id: str, row_id: int, pieces: list[tuple[int, int]]) -> None:
    conn = session.connection()
    conn.execute(delete(Block).where(Block.id == row_id))
    rows = [_row(pool_id, a, b) for a, b in pieces if a <= b]
    if rows:
        conn.execute(insert(Block), rows)


def take_size(session: Session, pool_id: str, host_bits: int) -> int | None:
    """The first address of a free aligned block of 2**host_bits addresses, or None."""
    found = session.connection().execute(_BEST_FIT, {"pool": pool_id, "bits": host_bits}).first()
    if found is None:
        return None
    row_id, first, last = found[0], int(found[1], 16), int(found[2], 16)
    step = 1 << host_bits
    start = -(-first // step) * step
    _replace(session, pool_id, row_id, [(first, start - 1), (start + step, last)])
    return start


def take_range(session: Session, pool_id: str, first: int, last: int) -> bool:
    """Claim exactly [first, last] if it is all free."""
    found = session.connection().execute(_CONTAINING, {"pool": pool_id, "key": to_key(first)}).first()
    if found is None or int(found[2], 16) < last:
        return False
    row_id, a, b = found[0], int(found[1], 16), int(found[2], 16)
    _replace(session, pool_id, row_id, [(a, first - 1), (last + 1, b)])
    return True


def give_back(session: Session, pool_id: str, first: int, last: int) -> None:
    """Return [first, last] to the pool, merged with the free ranges on either side."""
    conn = session.connection()
    left = conn.execute(
        select(Block.id, Block.first_key).where(Block.subnetpool_id == pool_id, Block.last_key == to_key(first - 1))
    ).first()
    right = conn.execute(
        select(Block.id, Block.last_key).where(Block.subnetpool_id == pool_id, Block.first_key == to_key(last + 1))
    ).first()
    ids = [r[0] for r in (left, right) if r is not None]
    if ids:
        conn.execute(delete(Block).where(Block.id.in_(ids)))
    start = int(left[1], 16) if left is not None else first
    end = int(right[1], 16) if right is not None else last
    conn.execute(insert(Block), [_row(pool_id, start, end)])


def add_ranges(session: Session, pool_id: str, ranges: Iterable[tuple[int, int]]) -> None:
    for first, last in ranges:
        give_back(session, pool_id, first, last)


def free_ranges(session: Session, pool_id: str) -> list[tuple[int, int]]:
    rows = session.execute(
        select(Block.first_key, Block.last_key).where(Block.subnetpool_id == pool_id).order_by(Block.first_key)
    )
    return [(int(a, 16), int(b, 16)) for a, b in rows]


def withdraw(session: Session, pool_id: str, first: int, last: int) -> None:
    """Take [first, last] out of the pool's free space (prefixes removed from the pool)."""
    rows = session.connection().execute(
        select(Block.id, Block.first_key, Block.last_key).where(
            Block.subnetpool_id == pool_id, Block.first_key <= to_key(last), Block.last_key >= to_key(first)
        )
    )
    for row_id, a, b in rows.all():
        _replace(session, pool_id, row_id, [(int(a, 16), first - 1), (last + 1, int(b, 16))])
