"""A varied database for migration tests: IPv4 and IPv6, several pools, SLAAC, routers, holes."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select

from pipam.db.models import IPAllocation
from pipam.service.database import Database
from pipam.testing import local


def build(db: Database, n_ports: int, seed: int = 7) -> dict[str, Any]:
    rnd = random.Random(seed)
    made: dict[str, Any] = {}

    def setup(u):  # type: ignore[no-untyped-def]
        a = local.create(u, "network", {"name": "a"})
        b = local.create(u, "network", {"name": "b"})
        v4 = local.create(
            u,
            "subnet",
            {
                "network_id": a["id"],
                "cidr": "10.1.0.0/20",
                "ip_version": 4,
                "allocation_pools": [
                    {"start": "10.1.0.10", "end": "10.1.3.255"},
                    {"start": "10.1.8.0", "end": "10.1.15.200"},
                ],
            },
        )
        v6 = local.create(
            u,
            "subnet",
            {"network_id": a["id"], "cidr": "2001:db8:a::/64", "ip_version": 6, "ipv6_address_mode": "dhcpv6-stateful"},
        )
        slaac = local.create(
            u,
            "subnet",
            {
                "network_id": a["id"],
                "cidr": "2001:db8:b::/64",
                "ip_version": 6,
                "ipv6_address_mode": "slaac",
                "ipv6_ra_mode": "slaac",
            },
        )
        small = local.create(u, "subnet", {"network_id": b["id"], "cidr": "192.168.7.0/24", "ip_version": 4})
        router = local.create(
            u,
            "port",
            {
                "network_id": b["id"],
                "device_owner": "network:router_interface",
                "fixed_ips": [{"subnet_id": small["id"], "ip_address": "192.168.7.1"}],
            },
        )
        made.update(a=a, b=b, v4=v4, v6=v6, slaac=slaac, small=small, router=router)

    db.run(setup)
    created: list[str] = []
    on_a: set[str] = set()
    chunk = 200
    for start in range(0, n_ports, chunk):

        def some(u, start=start):  # type: ignore[no-untyped-def]
            # What it made is returned, not recorded as it goes: the runner reruns the whole function
            # after a lost race (a random MAC that collides, say), and a rerun must not count twice.
            made_here: list[tuple[str, bool]] = []
            for i in range(start, min(start + chunk, n_ports)):
                if i % 20 == 0:  # the small /24 takes 1 in 20: it must not run out
                    body = {"network_id": made["b"]["id"]}
                elif i % 37 == 0:  # an address outside every pool, inside the subnet
                    body = {"network_id": made["a"]["id"], "fixed_ips": [{"ip_address": f"10.1.5.{i % 250 + 1}"}]}
                else:
                    body = {"network_id": made["a"]["id"]}
                try:
                    made_here.append((local.create(u, "port", body)["id"], body["network_id"] == made["a"]["id"]))
                except Exception as exc:
                    if getattr(exc, "type", "") != "IpAddressAlreadyAllocated":
                        raise
            return made_here

        for pid, is_on_a in db.run(some):
            created.append(pid)
            if is_on_a:
                on_a.add(pid)
    # Holes: delete a fifth of the ports, move some addresses.
    doomed = rnd.sample(created, len(created) // 5)

    def churn(u):  # type: ignore[no-untyped-def]
        for pid in doomed:
            local.delete(u, "port", pid)

    db.run(churn)
    for pid in rnd.sample(sorted(on_a - set(doomed)), 5):
        db.run(lambda u, pid=pid: local.update(u, "port", pid, {"fixed_ips": [{"subnet_id": made["v4"]["id"]}]}))
    # A pool update that strands allocated addresses outside the new pools.
    db.run(
        lambda u: local.update(
            u,
            "subnet",
            made["v4"]["id"],
            {
                "allocation_pools": [
                    {"start": "10.1.0.10", "end": "10.1.2.255"},
                    {"start": "10.1.8.0", "end": "10.1.15.250"},
                ]
            },
        )
    )
    return made


def holdings(db: Database) -> dict[str, set[tuple[str, str]]]:
    """Port id -> its (subnet, address) pairs, straight from the core table."""
    out: dict[str, set[tuple[str, str]]] = {}
    with db.session(write=False) as session:
        for port_id, subnet_id, ip in session.execute(
            select(IPAllocation.port_id, IPAllocation.subnet_id, IPAllocation.ip_address)
        ):
            out.setdefault(port_id, set()).add((subnet_id, ip))
    return out


def build_many(db: Database, n_subnets: int, ports_per_subnet: int) -> None:
    """Many small subnets (so a migration has many batches), each partly allocated."""

    def run(u):  # type: ignore[no-untyped-def]
        n = local.create(u, "network", {"name": "many"})
        for i in range(n_subnets):
            version = 6 if i % 4 == 3 else 4
            cidr = f"2001:db8:{i:x}::/64" if version == 6 else f"10.{100 + i // 256}.{i % 256}.0/24"
            s = local.create(u, "subnet", {"network_id": n["id"], "cidr": cidr, "ip_version": version})
            for _ in range(ports_per_subnet):
                local.create(u, "port", {"network_id": n["id"], "fixed_ips": [{"subnet_id": s["id"]}]})

    db.run(run)


def build_scoped(db: Database, n_ports: int = 120) -> dict[str, Any]:
    """Address scopes, default subnet pools (both IP versions) and what hangs off them: subnets made
    with use_default_subnetpool, a SLAAC subnet whose ports changed their MAC, pools whose prefixes
    were added and removed, an external network, tagged ports."""
    made: dict[str, Any] = {}

    def setup(u):  # type: ignore[no-untyped-def]
        s4 = local.create(u, "address_scope", {"name": "scope4", "ip_version": 4})
        s6 = local.create(u, "address_scope", {"name": "scope6", "ip_version": 6, "shared": True})
        d4 = local.create(
            u,
            "subnetpool",
            {
                "name": "d4",
                "prefixes": ["10.200.0.0/16"],
                "default_prefixlen": 24,
                "is_default": True,
                "address_scope_id": s4["id"],
            },
        )
        d6 = local.create(
            u,
            "subnetpool",
            {
                "name": "d6",
                "prefixes": ["2001:db8:100::/48"],
                "default_prefixlen": 64,
                "is_default": True,
                "address_scope_id": s6["id"],
            },
        )
        other4 = local.create(
            u,
            "subnetpool",
            {"name": "o4", "prefixes": ["10.201.0.0/16"], "default_prefixlen": 26, "address_scope_id": s4["id"]},
        )
        local.action(u, "subnetpool", "add_prefixes", other4["id"], {"prefixes": ["10.202.0.0/16"]})
        local.action(u, "subnetpool", "remove_prefixes", other4["id"], {"prefixes": ["10.201.128.0/17"]})
        net = local.create(u, "network", {"name": "scoped"})
        v4 = local.create(u, "subnet", {"network_id": net["id"], "ip_version": 4, "use_default_subnetpool": True})
        v4b = local.create(u, "subnet", {"network_id": net["id"], "ip_version": 4, "subnetpool_id": other4["id"]})
        v6 = local.create(
            u,
            "subnet",
            {
                "network_id": net["id"],
                "ip_version": 6,
                "use_default_subnetpool": True,
                "ipv6_address_mode": "slaac",
                "ipv6_ra_mode": "slaac",
            },
        )
        ext = local.create(u, "network", {"name": "ext", "router:external": True, "mtu": 1400})
        ext_sub = local.create(u, "subnet", {"network_id": ext["id"], "ip_version": 4, "cidr": "198.51.100.0/24"})
        made.update(s4=s4, s6=s6, d4=d4, d6=d6, other4=other4, net=net, v4=v4, v4b=v4b, v6=v6, ext=ext, ext_sub=ext_sub)

    db.run(setup)

    def fill(u):  # type: ignore[no-untyped-def]
        ports: list[str] = []  # returned, so that a rerun of the whole function does not count twice
        for i in range(n_ports):
            body: dict[str, Any] = {"network_id": made["net"]["id"], "tags": [f"t{i % 3}"]}
            if i % 4 == 0:
                body["fixed_ips"] = [{"subnet_id": made["v4b"]["id"]}]
            else:  # named: which IPv4 subnet a port without fixed_ips gets is the older one's, by the second
                body["fixed_ips"] = [{"subnet_id": made["v4"]["id"]}, {"subnet_id": made["v6"]["id"]}]
            ports.append(local.create(u, "port", body)["id"])
        local.create(u, "port", {"network_id": made["ext"]["id"]})
        return ports

    ports = db.run(fill)

    def remac(u):  # type: ignore[no-untyped-def]
        for pid in ports[::10]:
            local.update(u, "port", pid, {"mac_address": None})  # a new MAC, a new EUI-64 address

    db.run(remac)
    made["ports"] = ports
    return made
