"""Which free range holds an address: the lookups of ``RangeStore``, in the form each database's planner
answers with one index probe per address.

A free range holds ``key`` when it is the owner's range with the greatest ``first_key <= key`` and its
``last_key >= key``. Measured on a SLAAC subnet fragmented into 5,000 ranges (bench/README.md, eighteenth
round), per 500 addresses:

- one ``ORDER BY first_key DESC LIMIT 1`` lookup each: SQLite 14 ms, PostgreSQL 85 ms (a round trip
  each), MariaDB 952 ms: MariaDB may plan it as a walk over the owner's ranges, which grows as the
  subnet fragments;
- the addresses as a table (``json_each``, ``unnest`` of one bound list) and each one's range start
  found by a correlated ``max()`` in an ``IN``: SQLite 1.6 ms; PostgreSQL 8.5 ms, but planned as a hash
  join over all the owner's ranges; MariaDB 1,044 ms (it does not turn a correlated ``max()`` into a
  probe);
- PostgreSQL: ``unnest`` of the addresses, each probing by a lateral ``ORDER BY ... LIMIT 1``: 3.6 ms;
- one uncorrelated ``max()`` subquery per address in an ``IN`` list: MariaDB 27 ms (SQLite 9.6,
  PostgreSQL 140: planning hundreds of subqueries); MariaDB answers each subquery from the index while
  planning, then probes the ranges they name (see ``MARIADB_CHUNK``).

So for many addresses SQLite gets the table with the correlated ``max()``, PostgreSQL the lateral probe
and MariaDB the ``IN`` list; for one address, MariaDB the ``IN`` list of one and the others the plain
``ORDER BY ... LIMIT 1``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Column, Connection, Select, String, Table, bindparam, func, select, true

CHUNK = 512  # addresses per statement: well under every dialect's limit on bound parameters
# MariaDB's IN list is costed against reading all the owner's ranges: at 512 addresses among 5,000 ranges
# it read all 5,000 (83 ms), at 256 among 1,000 all 1,000; at 64 it probed each address (2.4 ms).
MARIADB_CHUNK = 64


class RangeLookup:
    """The lookup statements of one free-range table, grouped by its owner column."""

    def __init__(self, table: Table, owner: Column[Any]) -> None:
        self.table = table
        self.owner = owner
        c = table.c
        self._cols = select(c.id, c.pool_id, c.first_key, c.last_key).where(owner == bindparam("owner"))
        self._nearest_below = self._cols.order_by(c.first_key.desc()).limit(1)
        self._containing = self._nearest_below.where(c.first_key <= bindparam("key"))
        self._built: dict[tuple[str, int], Select[Any]] = {}  # (dialect, IN list size or 0) -> statement

    def containing(self, conn: Connection, owner_id: str, key: str) -> Any:
        """The row of the range with the greatest ``first_key <= key``, or None; its ``last_key`` may lie
        below ``key``."""
        if conn.dialect.name == "mysql":
            return conn.execute(self._statement("mysql", 1), {"owner": owner_id, "k0": key}).first()
        return conn.execute(self._containing, {"owner": owner_id, "key": key}).first()

    def containing_each(self, conn: Connection, owner_id: str, keys: Sequence[str]) -> list[Any]:
        """The rows of the ranges that ``containing`` answers for any of ``keys`` (``find_values`` gives
        each once), in no order, one statement per ``CHUNK`` keys (``MARIADB_CHUNK`` on MariaDB): each
        statement answers a range once, but two may answer it in two forms when another transaction changed
        it between them."""
        dialect = conn.dialect.name
        chunk = MARIADB_CHUNK if dialect == "mysql" else CHUNK
        return [
            row
            for start in range(0, len(keys), chunk)
            for row in conn.execute(*self._each(dialect, owner_id, list(keys[start : start + chunk])))
        ]

    def _each(self, dialect: str, owner_id: str, keys: list[str]) -> tuple[Select[Any], dict[str, Any]]:
        if dialect == "mysql":
            # Shapes by powers of two, padded with the last key: a few statements to compile and cache.
            size = 1 << (len(keys) - 1).bit_length()
            padded = keys + [keys[-1]] * (size - len(keys))
            return self._statement(dialect, size), {"owner": owner_id, **{f"k{i}": k for i, k in enumerate(padded)}}
        bound = keys if dialect == "postgresql" else json.dumps(keys)
        return self._statement(dialect, 0), {"owner": owner_id, "keys": bound}

    def _statement(self, dialect: str, size: int) -> Select[Any]:
        """Built once per dialect (and IN list size): building a statement costs more than running it."""
        key = (dialect, size)
        if key not in self._built:
            self._built[key] = self._in_list(size) if size else self._table_form(dialect)
        return self._built[key]

    def _start_at_or_below(self, key: Any) -> Any:
        """The greatest ``first_key <= key`` of the owner's ranges, as a scalar subquery."""
        inner = self.table.alias("below")
        return (
            select(func.max(inner.c.first_key))
            .where(inner.c[self.owner.key] == bindparam("owner"), inner.c.first_key <= key)
            .scalar_subquery()
        )

    def _in_list(self, size: int) -> Select[Any]:
        starts = [self._start_at_or_below(bindparam(f"k{i}")) for i in range(size)]
        return self._cols.where(self.table.c.first_key.in_(starts))

    def _table_form(self, dialect: str) -> Select[Any]:
        if dialect == "postgresql":
            # Each key's range by a lateral probe: with the correlated max() in an IN, PostgreSQL hashed
            # all the owner's ranges (5,000 read for 500 keys).
            keys = func.unnest(bindparam("keys", type_=ARRAY(String))).table_valued("value").render_derived()
            c = self.table.c
            holder = self._nearest_below.where(c.first_key <= keys.c.value).lateral("holder")
            return select(*holder.c).distinct().select_from(keys).join(holder, true())
        keys = func.json_each(bindparam("keys")).table_valued("value")
        starts = select(self._start_at_or_below(keys.c.value)).select_from(keys)
        return self._cols.where(self.table.c.first_key.in_(starts))
