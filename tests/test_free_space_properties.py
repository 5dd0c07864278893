"""Property tests of the free-space check: the interval sweep against a model of address sets, and
verify against a real backend after random operations and one random corruption of its ranges."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipam.errors import PipamError
from pipam.ipam import free_ranges
from pipam.migration.free_space import ALLOCATED, MISSING, OUTSIDE_POOLS, OVERLAP, check_probe, check_ranges, points
from pipam.testing.local import LocalClient
from tests import corrupt
from tests.conftest import reset
from tests.helpers import delete_port, net, port, subnet, update_subnet

disjoint = st.lists(st.integers(0, 60), unique=True, max_size=8).map(
    lambda bounds: [(a, b) for a, b in zip(sorted(bounds)[::2], sorted(bounds)[1::2], strict=False)]
)
anywhere = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])), max_size=10)
values = st.sets(st.integers(0, 70), max_size=20)


def spread(ranges: list[tuple[int, int]]) -> list[int]:
    return [v for a, b in ranges for v in range(a, b + 1)]


@given(disjoint, values, anywhere, values)
def test_check_ranges_matches_a_model_of_sets(pools, allocated, stored, pending):
    problems = check_ranges(pools, sorted(allocated), sorted(stored), points(sorted(pending)))
    in_pools = set(spread(pools))
    cover = Counter(spread(stored))
    free = set(cover)
    model = {
        OVERLAP: {v for v, n in cover.items() if n > 1},
        OUTSIDE_POOLS: free - in_pools,
        ALLOCATED: free & in_pools & allocated,
        MISSING: in_pools - allocated - free,
    }
    for kind, want in model.items():
        got = spread([(p.first, p.last) for p in problems if p.kind == kind])
        assert len(got) == len(set(got)), f"{kind} reported twice"
        assert set(got) == want - pending, kind


@given(disjoint, values, st.one_of(st.none(), st.integers(0, 70)), st.booleans())
def test_check_probe_matches_a_model_of_sets(pools, allocated, offered, shared):
    problems = check_probe(pools, sorted(allocated), offered, shared=shared)
    free = set(spread(pools)) - allocated
    if offered is None:
        assert bool(problems) == (bool(free) and not shared)
        assert set(spread([(p.first, p.last) for p in problems])) == (set() if shared else free)
    else:
        assert bool(problems) == (offered not in free)


# --- a real backend -------------------------------------------------------------------------------

CIDR = ipaddress.ip_network("10.9.0.0/27")
HOSTS = range(2, 31)


def at(host: int) -> str:
    return str(CIDR.network_address + host)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("any"), st.just(0), st.just(0)),
        st.tuples(st.just("specific"), st.sampled_from(HOSTS), st.just(0)),
        st.tuples(st.just("delete"), st.integers(0, 1000), st.just(0)),
        st.tuples(st.just("repool"), st.sampled_from(HOSTS), st.integers(0, 12)),
    ),
    max_size=14,
)
CORRUPTIONS = ["delete", "shrink", "split", "overlap", "over_allocated", "outside"]


def corrupt_one(db, backend, sid, kind, pools, held, draw) -> str:  # type: ignore[no-untyped-def]
    """Apply ``kind`` when the subnet's state allows it, else the one that always applies (outside)."""
    engine = db.engine
    rows = corrupt.ranges(engine, backend, sid)
    wide = [r for r in rows if r[2] - r[1] >= 2]
    in_pool_held = [corrupt.ip(a) for a in held if any(p[0] <= a_int(a) <= p[1] for p in pools)]
    if kind == "delete" and rows:
        corrupt.delete_range(engine, backend, draw(st.sampled_from(rows))[0])
    elif kind == "shrink" and rows and any(r[2] > r[1] for r in rows):
        rid, first, last = draw(st.sampled_from([r for r in rows if r[2] > r[1]]))
        if draw(st.booleans()):
            corrupt.set_range(engine, backend, rid, first + 1, last)
        else:
            corrupt.set_range(engine, backend, rid, first, last - 1)
    elif kind == "split" and wide:
        rid, first, last = draw(st.sampled_from(wide))
        middle = draw(st.integers(first + 1, last - 1))
        corrupt.set_range(engine, backend, rid, first, middle - 1)
        corrupt.insert_range(engine, backend, sid, middle + 1, last)
    elif kind == "overlap" and rows:
        _, first, last = draw(st.sampled_from(rows))
        corrupt.insert_range(engine, backend, sid, first, draw(st.integers(first, last)))
    elif kind == "over_allocated" and in_pool_held:
        value = draw(st.sampled_from(in_pool_held))
        corrupt.insert_range(engine, backend, sid, value, value)
    else:
        outside = [int(CIDR.network_address) + h for h in range(1, 31) if not any(p[0] <= h <= p[1] for p in pools)]
        value = draw(st.sampled_from(outside))  # the gateway (.1) is never in a pool
        corrupt.insert_range(engine, backend, sid, value, value)
        return "outside"
    return kind


def a_int(address: str) -> int:
    return int(ipaddress.ip_address(address)) - int(CIDR.network_address)


@pytest.mark.slow  # about 6 s per backend: random operations, then a corruption, per example
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(ops=operations, kind=st.sampled_from(CORRUPTIONS), data=st.data())
def test_verify_notices_any_corrupted_range_after_random_operations(db, backend, monkeypatch, ops, kind, data):
    monkeypatch.setattr(free_ranges, "_rng", random.Random(0))  # replayable choices of "any address"
    reset(db, backend)
    n = net(db)["id"]
    sid = subnet(db, n, str(CIDR), allocation_pools=[{"start": at(2), "end": at(20)}])["id"]
    pools = [(2, 20)]
    ports: dict[str, str] = {}  # port -> address
    for op, a, b in ops:
        try:
            if op == "any":
                p = port(db, n)
                ports[p["id"]] = p["fixed_ips"][0]["ip_address"]
            elif op == "specific":
                p = port(db, n, fixed_ips=[{"ip_address": at(a)}])
                ports[p["id"]] = at(a)
            elif op == "delete" and ports:
                victim = list(ports)[a % len(ports)]
                delete_port(db, victim)
                del ports[victim]
            elif op == "repool":
                last = min(a + b, 30)
                update_subnet(db, sid, allocation_pools=[{"start": at(a), "end": at(last)}])
                pools = [(a, last)]
        except PipamError as exc:
            assert exc.type in ("IpAddressGenerationFailure", "IpAddressAlreadyAllocated"), exc.message
    before = LocalClient(db).verify()
    assert before.clean, [d.as_dict() for d in before.differences]

    applied = corrupt_one(db, backend, sid, kind, pools, list(ports.values()), data.draw)
    result = LocalClient(db).verify()
    kinds = {d.kind for d in result.differences if d.subnet_id == sid}
    assert any(k.startswith("free_space_") for k in kinds), (applied, [d.as_dict() for d in result.differences])
