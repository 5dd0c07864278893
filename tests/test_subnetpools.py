"""Subnets allocated from subnet pools."""

from __future__ import annotations

import ipaddress

import pytest

from pipam.errors import PipamError
from pipam.service import subnetpools
from tests.helpers import delete_subnet, net, pool, subnet


def error_of(fn) -> PipamError:  # type: ignore[no-untyped-def]
    with pytest.raises(PipamError) as info:
        fn()
    return info.value


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
    err = error_of(lambda: db.run(lambda u: subnetpools.delete(u, p["id"])))
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
    up = db.run(lambda u: subnetpools.update(u, p["id"], {"prefixes": ["10.10.0.0/24", "10.20.0.0/24"]}))
    assert up["prefixes"] == ["10.10.0.0/24", "10.20.0.0/24"]
    err = error_of(lambda: db.run(lambda u: subnetpools.update(u, p["id"], {"prefixes": ["10.20.0.0/24"]})))
    assert err.status == 400
