"""Port address semantics: automatic, by subnet, by address, updates, deletes, IPv6 modes."""

from __future__ import annotations

import ipaddress
import re

import netaddr
import pytest

from pipam.service import tags
from pipam.service.policy import ADMIN
from pipam.service.resources import ports as ports_module
from pipam.testing import local
from tests.helpers import avail, delete_port, error_of, ips, net, port, statements_sent, subnet, update_port


@pytest.fixture
def v4(db):
    n = net(db)["id"]
    return n, subnet(db, n, "10.0.0.0/24")


def test_automatic_address_is_in_pool(db, v4):
    n, s = v4
    p = port(db, n)
    assert len(p["fixed_ips"]) == 1 and p["fixed_ips"][0]["subnet_id"] == s["id"]
    ip = ipaddress.ip_address(ips(p)[0])
    assert ipaddress.ip_address("10.0.0.2") <= ip <= ipaddress.ip_address("10.0.0.254")


def test_specific_address_then_conflict(db, v4):
    n, s = v4
    assert ips(port(db, n, fixed_ips=[{"ip_address": "10.0.0.7"}])) == ["10.0.0.7"]
    err = error_of(lambda: port(db, n, fixed_ips=[{"subnet_id": s["id"], "ip_address": "10.0.0.7"}]))
    assert (err.status, err.type) == (409, "IpAddressAlreadyAllocated")


def test_address_outside_subnet_is_400(db, v4):
    n, s = v4
    err = error_of(lambda: port(db, n, fixed_ips=[{"subnet_id": s["id"], "ip_address": "10.9.0.7"}]))
    assert (err.status, err.type) == (400, "InvalidIpForSubnet")
    err = error_of(lambda: port(db, n, fixed_ips=[{"ip_address": "10.9.0.7"}]))
    assert (err.status, err.type) == (400, "InvalidIpForNetwork")
    err = error_of(lambda: port(db, n, fixed_ips=[{"subnet_id": s["id"], "ip_address": "10.0.0.255"}]))
    assert (err.status, err.type) == (400, "InvalidIpForSubnet")


def test_specific_address_outside_pool_but_inside_subnet(db):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/24", allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.110"}])
    assert ips(port(db, n, fixed_ips=[{"ip_address": "10.0.0.5"}])) == ["10.0.0.5"]
    assert error_of(lambda: port(db, n, fixed_ips=[{"ip_address": "10.0.0.5"}])).type == "IpAddressAlreadyAllocated"


def test_gateway_reserved_for_router_ports(db, v4):
    n, _ = v4
    err = error_of(lambda: port(db, n, fixed_ips=[{"ip_address": "10.0.0.1"}]))
    assert err.status == 409
    r = port(db, n, device_owner="network:router_interface", fixed_ips=[{"ip_address": "10.0.0.1"}])
    assert ips(r) == ["10.0.0.1"]


def test_many_fixed_ips_and_no_fixed_ips(db):
    n = net(db)["id"]
    a = subnet(db, n, "10.0.0.0/24")
    b = subnet(db, n, "10.0.1.0/24")
    p = port(db, n, fixed_ips=[{"subnet_id": a["id"]}, {"subnet_id": b["id"]}, {"ip_address": "10.0.1.9"}])
    assert len(p["fixed_ips"]) == 3 and "10.0.1.9" in ips(p)
    assert port(db, n, fixed_ips=[])["fixed_ips"] == []


def test_failed_port_create_leaves_nothing_behind(db, v4):
    n, s = v4
    before = avail(db, n)["used_ips"]
    err = error_of(lambda: port(db, n, fixed_ips=[{"subnet_id": s["id"]}, {"ip_address": "10.0.0.300"}]))
    assert err.status == 400
    port(db, n, fixed_ips=[{"ip_address": "10.0.0.8"}])
    err = error_of(lambda: port(db, n, fixed_ips=[{"subnet_id": s["id"]}, {"ip_address": "10.0.0.8"}]))
    assert err.type == "IpAddressAlreadyAllocated"
    assert avail(db, n)["used_ips"] == before + 1


def test_update_fixed_ips_swaps_atomically(db, v4):
    n, s = v4
    p = port(db, n, fixed_ips=[{"ip_address": "10.0.0.10"}])
    other = port(db, n, fixed_ips=[{"ip_address": "10.0.0.11"}])
    # Asking for a taken address fails and keeps the old one.
    err = error_of(lambda: update_port(db, p["id"], fixed_ips=[{"ip_address": "10.0.0.11"}]))
    assert err.type == "IpAddressAlreadyAllocated"
    assert error_of(lambda: port(db, n, fixed_ips=[{"ip_address": "10.0.0.10"}])).type == "IpAddressAlreadyAllocated"
    p2 = update_port(db, p["id"], fixed_ips=[{"ip_address": "10.0.0.12"}])
    assert ips(p2) == ["10.0.0.12"]
    assert ips(port(db, n, fixed_ips=[{"ip_address": "10.0.0.10"}])) == ["10.0.0.10"]
    # subnet_id alone keeps the address already held on that subnet.
    assert ips(update_port(db, other["id"], fixed_ips=[{"subnet_id": s["id"]}])) == ["10.0.0.11"]
    p3 = update_port(db, p["id"], fixed_ips=[{"ip_address": "10.0.0.12"}, {"subnet_id": s["id"]}])
    assert len(p3["fixed_ips"]) == 2


def test_delete_frees_address_at_once(db):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/29")
    held = [port(db, n) for _ in range(5)]
    assert error_of(lambda: port(db, n)).type == "IpAddressGenerationFailure"
    freed = ips(held[2])[0]
    delete_port(db, held[2]["id"])
    assert ips(port(db, n)) == [freed]


def _port_reads(sent: list[tuple[str, object]]) -> list[str]:
    """The statements that read a port's row or its addresses."""
    return [s for s, _ in sent if re.match(r"\s*SELECT\b.*\bFROM (ports|ipallocations)\b", s, re.S)]


def test_a_port_delete_reads_its_addresses_once(db, v4):
    """The port is read with its addresses in one statement, they are released and the port deleted;
    nothing reads them again (the delete's cascade used to load the emptied collection, and the port's
    addresses were a statement of their own: two round trips on every port delete)."""
    n, _ = v4
    made = port(db, n)
    with statements_sent(db) as sent:
        delete_port(db, made["id"])
    reads = _port_reads(sent)
    assert len(reads) == 1 and "ipallocations" in reads[0], reads
    assert error_of(lambda: delete_port(db, made["id"])).type == "PortNotFound"


def test_an_admins_update_and_delete_do_not_read_the_network(db, v4):
    """The policy allows an admin everything: the network its rules look at (shared? whose?) is not read.
    A project's update and delete still are checked against it (tests/test_policy.py)."""
    n, _ = v4
    made = port(db, n)
    with statements_sent(db) as sent:
        update_port(db, made["id"], device_id="vm-1", device_owner="compute:nova")
        delete_port(db, made["id"])
    assert not [s for s, _ in sent if re.search(r"\bFROM networks\b", s)], sent


def test_fixed_ips_naming_one_subnet_twice_read_it_once(db, v4):
    """A read that does not lock answers a row the transaction already holds without a statement."""
    n, s = v4
    made = port(db, n)
    keep = made["fixed_ips"][0]
    with statements_sent(db) as sent:
        updated = update_port(db, made["id"], fixed_ips=[keep, {"subnet_id": s["id"], "ip_address": "10.0.0.9"}])
    assert sorted(ips(updated)) == sorted([keep["ip_address"], "10.0.0.9"])
    # the subnet's own row (the builtin backend also reads it joined to its pools, for the allocation)
    reads = [s for s, _ in sent if re.match(r"\s*SELECT\b.*\bFROM subnets\s+WHERE\b", s, re.S)]
    assert len(reads) == 1, reads


def test_a_tag_operation_on_a_port_reads_its_row_alone(db, v4):
    n, _ = v4
    made = port(db, n)
    with statements_sent(db) as sent:
        db.run(lambda u: tags.add(u, ports_module.DEFINITION, made["id"], ["blue"], ADMIN))
        listed = db.run(lambda u: tags.listed(u, ports_module.DEFINITION, made["id"], ADMIN), write=False)
    assert listed == ["blue"]
    reads = [s for s, _ in sent if s.lstrip().startswith("SELECT")]
    assert len(reads) == 2 and not [s for s in reads if "ipallocations" in s], reads


def test_an_update_that_leaves_the_addresses_alone_reads_them_once(db, v4):
    n, _ = v4
    made = port(db, n)
    with statements_sent(db) as sent:
        updated = update_port(db, made["id"], device_id="vm-1", device_owner="compute:nova")
    reads = _port_reads(sent)
    assert len(reads) == 1 and "ipallocations" in reads[0], reads
    assert updated["fixed_ips"] == made["fixed_ips"] and updated["device_id"] == "vm-1"


def test_exhaustion_error_names_network(db):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/30")
    port(db, n)
    err = error_of(lambda: port(db, n))
    assert (err.status, err.type) == (409, "IpAddressGenerationFailure") and n in err.message


def test_default_allocation_moves_to_next_subnet_when_first_is_full(db):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/30")
    subnet(db, n, "10.0.1.0/30")
    got = {ips(port(db, n))[0] for _ in range(2)}
    assert got == {"10.0.0.2", "10.0.1.2"}
    assert error_of(lambda: port(db, n)).type == "IpAddressGenerationFailure"


def test_slaac_gets_eui64_and_stateful_allocates(db):
    n = net(db)["id"]
    subnet(db, n, "2001:db8::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    stateful = subnet(db, n, "2001:db8:1::/64", ipv6_address_mode="dhcpv6-stateful")
    subnet(db, n, "10.0.0.0/24")
    p = port(db, n, mac_address="fa:16:3e:aa:bb:cc")
    got = ips(p)
    assert "2001:db8::f816:3eff:feaa:bbcc" in got
    assert any(ipaddress.ip_address(i) in ipaddress.ip_network(stateful["cidr"]) for i in got)
    assert len(got) == 3
    err = error_of(lambda: port(db, n, fixed_ips=[{"ip_address": "2001:db8::5"}]))
    assert err.status == 400


def test_ipv6_any_address_never_enumerates_the_pool(db):
    n = net(db)["id"]
    s = subnet(db, n, "2001:db8::/48", ipv6_address_mode="dhcpv6-stateful")
    got = {ips(port(db, n, fixed_ips=[{"subnet_id": s["id"]}]))[0] for _ in range(20)}
    assert len(got) == 20
    assert avail(db, n)["total_ips"] == 2**80 - 2


def test_a_random_mac_that_collides_is_drawn_again(db, v4, monkeypatch):
    """A drawn MAC is not looked up first: the port's unique key refuses the collision and the create
    is rerun with a new draw, leaving one port and one address per create."""
    n, _ = v4
    first = port(db, n, mac_address="fa:16:3e:00:00:01")
    draws = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"])
    monkeypatch.setattr(ports_module, "_random_mac", lambda: next(draws))
    second = port(db, n)
    assert second["mac_address"] == "fa:16:3e:00:00:02"
    assert len(second["fixed_ips"]) == 1 and ips(second) != ips(first)
    assert avail(db, n)["used_ips"] == 2


def test_bulk_random_macs_avoid_the_network_and_each_other(db, v4, monkeypatch):
    n, _ = v4
    port(db, n, mac_address="fa:16:3e:00:00:01")
    draws = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03"] * 3)
    monkeypatch.setattr(ports_module, "_random_mac", lambda: next(draws))
    got = db.run(lambda u: ports_module._random_macs(u, n, 2))
    assert sorted(got) == ["fa:16:3e:00:00:02", "fa:16:3e:00:00:03"]


def test_a_bulk_draws_its_macs_clear_of_the_network(db, v4, monkeypatch):
    """One by one, a drawn MAC that collides reruns the create; a bulk draws for all its ports first, so
    a collision costs a redraw, not a rerun of the whole batch (which at scale would keep colliding)."""
    n, s = v4
    port(db, n, mac_address="fa:16:3e:00:00:01")
    draws = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "fa:16:3e:00:00:04"])
    monkeypatch.setattr(ports_module, "_random_mac", lambda: next(draws))
    bodies = [{"network_id": n}, {"network_id": n, "fixed_ips": [{"subnet_id": s["id"]}]}, {"network_id": n}]
    reruns = db.runner.retries
    made = db.run(lambda u: local.create_many(u, "port", bodies))
    assert db.runner.retries == reruns
    assert sorted(p["mac_address"] for p in made) == ["fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "fa:16:3e:00:00:04"]
    assert all(len(p["fixed_ips"]) == 1 for p in made)


def test_a_bulk_checks_a_given_mac_against_the_ports_before_it(db, v4, monkeypatch):
    """A bulk writes its ports' rows together, but a port that gives its MAC is checked as one create
    after the other would be: against the ports before it in the same bulk, drawn MACs included."""
    n, _ = v4
    monkeypatch.setattr(ports_module, "_random_mac", lambda: "fa:16:3e:00:00:07")
    bodies = [{"network_id": n}, {"network_id": n, "mac_address": "fa:16:3e:00:00:07"}]
    err = error_of(lambda: db.run(lambda u: local.create_many(u, "port", bodies)))
    assert (err.status, err.type) == (409, "MacAddressInUse")
    given = [{"network_id": n, "mac_address": "fa:16:3e:00:00:08"}] * 2
    err = error_of(lambda: db.run(lambda u: local.create_many(u, "port", given)))
    assert (err.status, err.type) == (409, "MacAddressInUse")
    assert avail(db, n)["used_ips"] == 0


def test_a_bulk_draws_its_macs_clear_of_a_mac_given_before_them(db, v4, monkeypatch):
    n, _ = v4
    draws = iter(["fa:16:3e:00:00:09", "fa:16:3e:00:00:0a"])
    monkeypatch.setattr(ports_module, "_random_mac", lambda: next(draws))
    bodies = [{"network_id": n, "mac_address": "fa:16:3e:00:00:09"}, {"network_id": n}]
    reruns = db.runner.retries
    made = db.run(lambda u: local.create_many(u, "port", bodies))
    assert db.runner.retries == reruns
    assert [p["mac_address"] for p in made] == ["fa:16:3e:00:00:09", "fa:16:3e:00:00:0a"]
    assert all(len(p["fixed_ips"]) == 1 for p in made)


def test_a_bulk_writes_its_ports_with_one_insert_and_reads_none_back(db, v4):
    """A bulk of ports without fixed_ips sends, on the ports table, one insert and the check of its drawn
    MACs, for 40 ports as for 4: the answer is rendered from what was written, not read back."""
    n, _ = v4
    for size in (4, 40):
        with statements_sent(db) as sent:
            made = db.run(lambda u, size=size: local.create_many(u, "port", [{"network_id": n}] * size))
        assert len(made) == size and all(len(p["fixed_ips"]) == 1 for p in made)
        on_ports = [" ".join(s.split()) for s, _ in sent if re.search(r"\bports\b", s)]
        inserts = [s for s in on_ports if s.startswith("INSERT INTO ports ")]
        reads = [s for s in on_ports if s.startswith("SELECT") and "WHERE ports.mac_address IN" not in s]
        assert (len(inserts), reads) == (1, []), on_ports


def test_a_bulk_of_ports_naming_one_subnet_is_not_sent_port_by_port(db, v4):
    """Ports that each ask for an any-address of the same subnet (``fixed_ips: [{subnet_id}]``) go in
    as a run: 40 of them send barely more statements than 4 (one by one, 8 more each)."""
    n, s = v4
    body = {"network_id": n, "fixed_ips": [{"subnet_id": s["id"]}]}
    counts = []
    for size in (4, 40):
        with statements_sent(db) as sent:
            made = db.run(lambda u, size=size: local.create_many(u, "port", [body] * size))
        assert [p["fixed_ips"][0]["subnet_id"] for p in made] == [s["id"]] * size
        counts.append(len(sent))
    assert counts[1] - counts[0] < 10, counts
    assert avail(db, n)["used_ips"] == 44


def test_a_bulk_of_dual_stack_ports_naming_both_subnets_is_not_sent_port_by_port(db, v4):
    """Ports that each ask for an any-address of an IPv4 and of a DHCPv6-stateful subnet go in as one
    run: 40 of them send barely more statements than 4 (one by one, 9 to 11 more each)."""
    n, s = v4
    v6 = subnet(db, n, "2001:db8:1::/64", ipv6_address_mode="dhcpv6-stateful", ipv6_ra_mode="dhcpv6-stateful")
    body = {"network_id": n, "fixed_ips": [{"subnet_id": s["id"]}, {"subnet_id": v6["id"]}]}
    counts = []
    for size in (4, 40):
        with statements_sent(db) as sent:
            made = db.run(lambda u, size=size: local.create_many(u, "port", [body] * size))
        assert all(sorted(f["subnet_id"] for f in p["fixed_ips"]) == sorted([s["id"], v6["id"]]) for p in made)
        counts.append(len(sent))
    assert counts[1] - counts[0] < 10, counts


def test_a_bulk_of_ports_on_a_slaac_subnet_claims_their_eui64_addresses_together(db, v4):
    """Ports without fixed_ips, or naming an IPv4 and a SLAAC subnet, on a dual-stack network: each port
    more costs the lookup of the free range its EUI-64 address lies in, and about nothing else (one by
    one, 5 statements a port), on a backend that takes EUI-64 addresses in bulk."""
    n, s = v4
    slaac = subnet(db, n, "2001:db8:3::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    for body in (
        {"network_id": n},
        {"network_id": n, "fixed_ips": [{"subnet_id": s["id"]}, {"subnet_id": slaac["id"]}]},
    ):
        counts = []
        for size in (4, 40):
            with statements_sent(db) as sent:
                made = db.run(lambda u, size=size, body=body: local.create_many(u, "port", [body] * size))
            for p in made:
                eui = str(netaddr.EUI(p["mac_address"]).ipv6(netaddr.IPNetwork("2001:db8:3::/64").first))
                assert {"subnet_id": slaac["id"], "ip_address": eui} in p["fixed_ips"]
            counts.append(len(sent))
        assert counts[1] - counts[0] < 36 + 10, (body, counts)


def test_duplicate_mac_is_409(db, v4):
    n, _ = v4
    port(db, n, mac_address="fa:16:3e:01:02:03")
    err = error_of(lambda: port(db, n, mac_address="FA:16:3E:01:02:03"))
    assert (err.status, err.type) == (409, "MacAddressInUse")
    assert error_of(lambda: port(db, n, mac_address="zz")).status == 400


def test_availability_counts(db):
    n = net(db)["id"]
    subnet(db, n, "10.0.0.0/28")
    for _ in range(4):
        port(db, n)
    a = avail(db, n)
    assert (a["total_ips"], a["used_ips"]) == (13, 4)


def test_unknown_ids_are_404(db):
    unknown = "0b0e3b2c-52c5-4d53-9a39-3c5c3bd4e1a7"
    for fn in (
        lambda: port(db, unknown),
        lambda: delete_port(db, "nope"),
        lambda: update_port(db, "x", name="y"),
    ):
        assert error_of(fn).status == 404


def test_a_reference_that_is_not_a_uuid_is_refused(db):
    """Neutron validates ids in bodies (type:uuid): 400, not a lookup."""
    err = error_of(lambda: port(db, "nope"))
    assert (err.status, err.type) == (400, "HTTPBadRequest")
    assert "'nope' is not a valid UUID" in err.message


def test_named_addresses_are_taken_before_chosen_ones(db):
    """Four automatic addresses and one named one fill a 5-address pool in one request, every time."""
    n = net(db)["id"]
    s = subnet(db, n, "10.0.0.0/29")  # pool 10.0.0.2 - 10.0.0.6
    for _ in range(5):
        p = port(db, n, fixed_ips=[{"subnet_id": s["id"]}] * 4 + [{"ip_address": "10.0.0.6"}])
        assert sorted(ips(p)) == [f"10.0.0.{i}" for i in range(2, 7)]
        delete_port(db, p["id"])
