"""Subnets allocated from subnet pools."""

from __future__ import annotations

import ipaddress

import pytest

from pipam.errors import PipamError
from pipam.testing.local import LocalClient
from tests.helpers import delete_subnet, error_of, net, pool, subnet


def test_prefixes_hand_out_distinct_subnets(db):
    p = pool(db, name="p", prefixes=["10.10.0.0/22"], default_prefixlen=24, min_prefixlen=22, max_prefixlen=28)
    n = net(db)["id"]
    got = [subnet(db, n, subnetpool_id=p["id"], ip_version=4)["cidr"] for _ in range(4)]
    assert sorted(got) == ["10.10.0.0/24", "10.10.1.0/24", "10.10.2.0/24", "10.10.3.0/24"]
    err = error_of(lambda: subnet(db, n, subnetpool_id=p["id"], ip_version=4))
    assert (err.status, err.type) == (409, "SubnetAllocationError")


def test_prefixlen_string_and_bounds(db):
    p = pool(db, name="p", prefixes=["10.10.0.0/16"], default_prefixlen=24, min_prefixlen=20, max_prefixlen=28)
    n = net(db)["id"]
    s = subnet(db, n, subnetpool_id=p["id"], prefixlen="26")
    assert ipaddress.ip_network(s["cidr"]).prefixlen == 26
    assert error_of(lambda: subnet(db, n, subnetpool_id=p["id"], prefixlen=30)).status == 400
    assert error_of(lambda: subnet(db, n, subnetpool_id=p["id"], prefixlen=16)).status == 400


def test_specific_cidr_inside_pool(db):
    p = pool(db, name="p", prefixes=["10.10.0.0/16"], default_prefixlen=24)
    a, b = net(db)["id"], net(db)["id"]
    assert subnet(db, a, "10.10.7.0/24", subnetpool_id=p["id"])["subnetpool_id"] == p["id"]
    err = error_of(lambda: subnet(db, b, "10.10.7.0/25", subnetpool_id=p["id"]))
    assert err.type == "SubnetAllocationError"
    err = error_of(lambda: subnet(db, b, "10.99.0.0/24", subnetpool_id=p["id"]))
    assert err.type == "SubnetAllocationError"


def test_released_prefix_is_reused_and_pool_in_use(db):
    p = pool(db, name="p", prefixes=["10.10.0.0/24"], default_prefixlen=24)
    n = net(db)["id"]
    s = subnet(db, n, subnetpool_id=p["id"])
    err = error_of(lambda: LocalClient(db).delete("subnetpool", p["id"]))
    assert (err.status, err.type) == (409, "SubnetPoolInUse")
    delete_subnet(db, s["id"])
    assert subnet(db, n, subnetpool_id=p["id"])["cidr"] == "10.10.0.0/24"


def test_ipv6_pool(db):
    p = pool(db, name="p6", prefixes=["2001:db8::/32"], default_prefixlen=64)
    s = subnet(db, net(db)["id"], subnetpool_id=p["id"], ip_version=6)
    assert s["cidr"] == "2001:db8::/64" and s["ip_version"] == 6


@pytest.mark.parametrize(
    "body",
    [
        {"prefixes": []},
        {"prefixes": ["10.0.0.0/8", "2001:db8::/32"]},
        {"prefixes": ["10.0.0.0/8"], "min_prefixlen": 24, "default_prefixlen": 16},
        {"prefixes": ["bogus"]},
        {"prefixes": ["10.0.0.0/8"], "default_prefixlen": "abc"},
    ],
)
def test_bad_pools(db, body):
    assert error_of(lambda: pool(db, name="x", **body)).status == 400


def test_prefixes_can_only_grow(db):
    p = pool(db, name="p", prefixes=["10.10.0.0/24"])
    up = LocalClient(db).update("subnetpool", p["id"], prefixes=["10.10.0.0/24", "10.20.0.0/24"])
    assert up["prefixes"] == ["10.10.0.0/24", "10.20.0.0/24"]
    err = error_of(lambda: LocalClient(db).update("subnetpool", p["id"], prefixes=["10.20.0.0/24"]))
    assert err.status == 400


def test_free_blocks_stay_equal_to_prefixes_minus_subnets(db):
    """Random sizes created and deleted: the pool's free-block table always describes the truth."""
    import random

    import netaddr
    from sqlalchemy import select

    from pipam.db.models import Subnet
    from pipam.service import prefix_blocks

    rnd = random.Random(5)
    p = pool(
        db,
        name="p",
        prefixes=["10.40.0.0/20", "10.50.0.0/22"],
        default_prefixlen=26,
        min_prefixlen=20,
        max_prefixlen=30,
    )
    n = net(db)["id"]
    made: list[dict] = []
    for step in range(60):
        if made and rnd.random() < 0.35:
            delete_subnet(db, made.pop(rnd.randrange(len(made)))["id"])
        else:
            try:
                made.append(subnet(db, n, subnetpool_id=p["id"], prefixlen=rnd.choice([22, 24, 26, 28, 30])))
            except PipamError as exc:
                assert exc.type == "SubnetAllocationError", exc.message
        with db.session() as session:
            cidrs = list(session.scalars(select(Subnet.cidr).where(Subnet.subnetpool_id == p["id"])))
            free = prefix_blocks.free_ranges(session, p["id"])
        used = netaddr.IPSet(cidrs)
        assert used.size == sum(netaddr.IPNetwork(c).size for c in cidrs), f"overlap at step {step}"
        expected = netaddr.IPSet(["10.40.0.0/20", "10.50.0.0/22"]) - used
        assert [(r.first, r.last) for r in expected.iter_ipranges()] == free, f"step {step}"
    # Growing the pool makes room that merges with what is free next to it.
    LocalClient(db).update("subnetpool", p["id"], prefixes=["10.40.0.0/19", "10.50.0.0/22"])
    assert subnet(db, n, subnetpool_id=p["id"], prefixlen=20)["cidr"] == "10.40.16.0/20"
