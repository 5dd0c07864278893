"""``RangeStore.take_many``, the claim of a bulk request: against a model of address sets over random
fragmented free space, and with compare-and-swaps that lose to "another transaction"."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event, update
from sqlalchemy.orm import Session

from pipam.db.engine import make_engine
from pipam.errors import RetryTransaction
from pipam.ipam import free_ranges, range_lookup
from pipam.ipam.addr import to_key
from pipam.ipam.free_ranges import CLAIM_ATTEMPTS, RangeStore
from tests.databases import KINDS, url_for

OWNER = "subnet-1"

metadata = MetaData()
TABLE = Table(
    "free_ranges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner_id", String(36)),
    Column("pool_id", String(36)),
    Column("first_key", String(32)),
    Column("last_key", String(32)),
)
STORE = RangeStore(TABLE, "owner_id")


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        yield s
        s.rollback()


def load(session: Session, runs: list[tuple[str, int, int]]) -> None:
    session.execute(TABLE.delete())
    STORE._insert(session, [(OWNER, pool, a, b) for pool, a, b in runs])


def free_set(session: Session) -> set[int]:
    """The free addresses the store holds, checking that no two ranges overlap."""
    out: set[int] = set()
    for a, b in STORE.ranges(session, OWNER):
        run = set(range(a, b + 1))
        assert not run & out, f"overlapping free ranges at {sorted(run & out)}"
        out |= run
    return out


# Free space in many small runs (sorted distinct bounds paired up), of two pools taken in turn, so
# that runs of different pools often touch.
fragmented = st.lists(st.integers(0, 60), unique=True, min_size=2, max_size=16).map(
    lambda bounds: [
        (f"pool-{i % 2}", a, b) for i, (a, b) in enumerate(zip(sorted(bounds)[::2], sorted(bounds)[1::2], strict=False))
    ]
)


def rows(session: Session) -> list[tuple[str, int, int]]:
    stmt = TABLE.select().with_only_columns(TABLE.c.pool_id, TABLE.c.first_key, TABLE.c.last_key)
    return [(pool, int(a, 16), int(b, 16)) for pool, a, b in session.execute(stmt)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    runs=fragmented,
    extra=st.one_of(st.integers(-60, 0), st.integers(1, 3)),
    lowest=st.booleans(),
    seed=st.integers(0, 2**32),
    one_writer=st.booleans(),
)
def test_take_many_takes_exactly_count_or_nothing(session, monkeypatch, runs, extra, lowest, seed, one_writer):  # type: ignore[no-untyped-def]
    """Claims from the random point (as on PostgreSQL and MariaDB) and from the start of the range it
    lands in (SQLite, ``one_writer``), both on this SQLite session."""
    monkeypatch.setattr(free_ranges, "_rng", random.Random(seed))  # replayable random points
    monkeypatch.setattr(free_ranges, "one_writer", lambda _conn: one_writer)
    load(session, runs)
    before = free_set(session)
    pool_of = {v: pool for pool, a, b in runs for v in range(a, b + 1)}
    count = max(0, len(before) + extra)
    lost = free_ranges.claims.lost

    taken = STORE.take_many(session, OWNER, 0, 60, count, lowest=lowest)

    if count > len(before):
        assert taken == []
        assert free_set(session) == before  # all or none: what it took went back
        assert len(rows(session)) <= len(runs)  # and not in more pieces than it was
    else:
        assert len(taken) == count and len(set(taken)) == count
        assert set(taken) <= before
        assert free_set(session) == before - set(taken)
        if lowest:
            assert set(taken) == set(sorted(before)[:count])
    assert free_ranges.claims.lost == lost  # no other transaction: no claim lost
    # Each range left, split or given back lies in one pool, labelled with it.
    for pool, a, b in rows(session):
        assert {pool_of[v] for v in range(a, b + 1)} == {pool}, (pool, a, b)


@pytest.mark.parametrize("one_writer", [True, False])
def test_any_address_splits_a_range_only_where_writers_run_concurrently(session, monkeypatch, one_writer):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(free_ranges, "_rng", random.Random(1))
    monkeypatch.setattr(free_ranges, "one_writer", lambda _conn: one_writer)
    load(session, [("pool-a", 0, 99)])

    taken = [STORE.take_many(session, OWNER, 0, 99, 1)[0] for _ in range(10)]

    if one_writer:  # each claim moved the range's start: still one row
        assert taken == list(range(10))
        assert rows(session) == [("pool-a", 10, 99)]
    else:  # claims at random points: the range is cut where each one landed
        assert taken != list(range(10))
        assert len(rows(session)) > 5
    assert free_set(session) == set(range(100)) - set(taken)


def steal_after_lookups(monkeypatch, session: Session, times: int) -> list[int]:  # type: ignore[no-untyped-def]
    """After each of the next ``times`` range lookups, "another transaction" takes the range's first
    address, so the claim built on that lookup loses its compare-and-swap. Answers the stolen ones."""
    stolen: list[int] = []
    real = STORE._row

    def row(session_, stmt, **params):  # type: ignore[no-untyped-def]
        rng = real(session_, stmt, **params)
        if rng is not None and len(stolen) < times and rng.first < rng.last:
            session_.execute(update(TABLE).where(TABLE.c.id == rng.id).values(first_key=to_key(rng.first + 1)))
            stolen.append(rng.first)
        return rng

    monkeypatch.setattr(STORE, "_row", row)
    return stolen


def test_a_lost_compare_and_swap_is_retried_with_a_new_lookup(session, monkeypatch):  # type: ignore[no-untyped-def]
    load(session, [("pool-a", 10, 19), ("pool-a", 30, 39)])
    stolen = steal_after_lookups(monkeypatch, session, times=2)
    lost = free_ranges.claims.lost

    taken = STORE.take_many(session, OWNER, 10, 39, 15, lowest=True)

    assert free_ranges.claims.lost - lost == 2
    assert stolen == [10, 11]
    assert sorted(taken) == list(range(12, 20)) + list(range(30, 37))
    assert free_set(session) == set(range(37, 40))


def test_claims_that_keep_losing_ask_for_the_transaction_again(session, monkeypatch):  # type: ignore[no-untyped-def]
    load(session, [("pool-a", 0, 99)])
    steal_after_lookups(monkeypatch, session, times=CLAIM_ATTEMPTS)
    with pytest.raises(RetryTransaction):
        STORE.take_many(session, OWNER, 0, 99, 5)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    runs=fragmented, wanted=st.lists(st.integers(0, 60), max_size=20), chunk=st.sampled_from([1, 3, range_lookup.CHUNK])
)
def test_claim_values_takes_exactly_the_values_or_finds_which_are_not_free(session, monkeypatch, runs, wanted, chunk):  # type: ignore[no-untyped-def]
    """A bulk's given addresses (EUI-64 ones): ``find_values`` says which are not free, claiming nothing;
    when all are, ``claim_values`` takes exactly them, each range left in the pool it was. The lookup
    sends its addresses in chunks: of one, of three, or all in one."""
    monkeypatch.setattr(range_lookup, "CHUNK", chunk)
    load(session, runs)
    before = free_set(session)
    pool_of = {v: pool for pool, a, b in runs for v in range(a, b + 1)}

    found = STORE.find_values(session, OWNER, wanted)

    assert found.missing == set(wanted) - before
    assert free_set(session) == before
    if not found.missing:
        STORE.claim_values(session, OWNER, found)
        assert free_set(session) == before - set(wanted)
        for pool, a, b in rows(session):
            assert {pool_of[v] for v in range(a, b + 1)} == {pool}, (pool, a, b)


def test_a_bulk_claim_of_values_that_loses_a_race_asks_for_the_transaction_again(session, monkeypatch):  # type: ignore[no-untyped-def]
    load(session, [("pool-a", 0, 9), ("pool-a", 20, 29)])
    found = STORE.find_values(session, OWNER, [3, 5, 25])
    # Another transaction takes an address of the second range between the lookups and the claim.
    session.execute(update(TABLE).where(TABLE.c.first_key == to_key(20)).values(first_key=to_key(21)))
    lost = free_ranges.claims.lost
    with pytest.raises(RetryTransaction):
        STORE.claim_values(session, OWNER, found)
    assert free_ranges.claims.lost == lost + 1


def _cut_at_50(session: Session) -> None:
    """Another transaction claims 50 from [0, 99]: the row keeps [0, 49], a new one holds [51, 99]."""
    session.execute(update(TABLE).where(TABLE.c.first_key == to_key(0)).values(last_key=to_key(49)))
    STORE._insert(session, [(OWNER, "pool-a", 51, 99)])


def _moved_to_100(session: Session) -> None:
    """Claims and a give-back that leave the row of [0, 99] holding only 100: its two forms do not overlap."""
    session.execute(
        update(TABLE).where(TABLE.c.first_key == to_key(0)).values(first_key=to_key(100), last_key=to_key(100))
    )


@pytest.mark.parametrize(("change", "wanted"), [(_cut_at_50, [10, 60]), (_moved_to_100, [10, 100])])
def test_a_bulk_lookup_that_meets_a_range_changed_between_its_statements_asks_for_the_transaction_again(
    session, monkeypatch, change, wanted
):  # type: ignore[no-untyped-def]
    """Another transaction changes a range between two of the lookup's statements (one address each):
    claiming by the newer form would leave an address found in the older one free while recorded as held,
    so the transaction runs again."""
    load(session, [("pool-a", 0, 99)])
    monkeypatch.setattr(range_lookup, "CHUNK", 1)
    statement_for = range_lookup.RangeLookup._each
    calls = 0

    def changed_before_the_second(self, dialect, owner_id, keys):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            change(session)
        return statement_for(self, dialect, owner_id, keys)

    monkeypatch.setattr(range_lookup.RangeLookup, "_each", changed_before_the_second)
    lost = free_ranges.claims.lost
    with pytest.raises(RetryTransaction):
        STORE.find_values(session, OWNER, wanted)
    assert (calls, free_ranges.claims.lost) == (2, lost + 1)


@pytest.fixture(params=KINDS)
def on_each_database(request, tmp_path) -> Iterator[tuple[Session, list[str]]]:  # type: ignore[no-untyped-def]
    """A session on SQLite, PostgreSQL or MariaDB holding the free-range table, and the statements it sends."""
    engine = make_engine(url_for(request.param, str(tmp_path), "ranges"))
    metadata.drop_all(engine)
    metadata.create_all(engine)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: sent.append(statement))
    try:
        with Session(engine) as s:
            yield s, sent
            s.rollback()
    finally:
        engine.dispose()


def test_a_claim_inside_a_range_cuts_it_in_two_with_one_statement_on_postgresql(on_each_database):  # type: ignore[no-untyped-def]
    """Claiming 40 of [0, 99] keeps [0, 39] in the row and inserts [41, 99]: on PostgreSQL the update
    and the insert are one statement (one round trip), elsewhere two. A claim built on a stale read
    changes and inserts nothing."""
    session, sent = on_each_database
    load(session, [("pool-a", 0, 99)])
    rng = STORE._row(session, STORE._lowest, owner=OWNER)
    assert rng is not None
    del sent[:]

    assert STORE._claim(session, OWNER, rng, 40)

    assert len(sent) == (1 if session.get_bind().dialect.name == "postgresql" else 2), sent
    assert sorted(rows(session), key=lambda r: r[1]) == [("pool-a", 0, 39), ("pool-a", 41, 99)]
    assert not STORE._claim(session, OWNER, rng, 60)  # the row no longer holds [0, 99]
    assert sorted(rows(session), key=lambda r: r[1]) == [("pool-a", 0, 39), ("pool-a", 41, 99)]


@pytest.mark.parametrize(
    ("free", "after", "tries"),
    [
        ([("pool-a", 0, 39), ("pool-a", 41, 99)], [(0, 40), (41, 99)], 1),  # the range below grows
        ([("pool-a", 0, 38), ("pool-a", 41, 99)], [(0, 38), (40, 99)], 2),  # none ends below: the one above
        # The range ending below is another pool's, none starts above: a range of its own.
        ([("pool-a", 0, 38), ("pool-b", 39, 39), ("pool-a", 42, 99)], [(0, 38), (40, 40), (42, 99)], 3),
    ],
)
def test_an_address_given_back_joins_a_neighbour_with_one_statement_on_postgresql(on_each_database, free, after, tries):  # type: ignore[no-untyped-def]
    """40 goes back to pool-a: one statement on PostgreSQL, elsewhere one per try (grow the range below,
    grow the one above, insert), the same ranges after it on each."""
    session, sent = on_each_database
    load(session, free)
    del sent[:]

    STORE.give_back(session, OWNER, "pool-a", 40)

    assert len(sent) == (1 if session.get_bind().dialect.name == "postgresql" else tries), sent
    assert sorted((a, b) for pool, a, b in rows(session) if pool == "pool-a") == after
