"""Unmodified OpenStack clients (openstacksdk and the openstack CLI) against a real pipam serve."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import openstack
import pytest

OPENSTACK = str(Path(sys.executable).with_name("openstack"))

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


@pytest.fixture
def conn(api, server):
    connection = openstack.connect(auth_type="none", auth={"endpoint": f"{server.base}/"})
    yield connection
    connection.close()


def test_sdk_lifecycle(conn):
    net = conn.network.create_network(name="sdk-net")
    sub = conn.network.create_subnet(
        network_id=net.id,
        ip_version=4,
        cidr="10.0.0.0/24",
        name="s1",
        allocation_pools=[{"start": "10.0.0.10", "end": "10.0.0.20"}],
    )
    assert sub.allocation_pools == [{"start": "10.0.0.10", "end": "10.0.0.20"}]
    pool = conn.network.create_subnet_pool(name="p", prefixes=["10.20.0.0/16"], default_prefix_length=24)
    # Subnets from a pool live on networks of their own: one network's subnets of an IP version come
    # from one pool or none (Neutron's NetworkSubnetPoolAffinityError).
    pooled_net = conn.network.create_network(name="pooled")
    from_pool = conn.network.create_subnet(
        network_id=pooled_net.id, ip_version=4, subnet_pool_id=pool.id, prefix_length=26
    )
    assert from_pool.cidr == "10.20.0.0/26"

    specific = conn.network.create_port(network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": "10.0.0.15"}])
    assert specific.fixed_ips == [{"subnet_id": sub.id, "ip_address": "10.0.0.15"}]
    auto = conn.network.create_port(network_id=net.id, fixed_ips=[{"subnet_id": sub.id}])
    assert auto.fixed_ips[0]["subnet_id"] == sub.id

    with pytest.raises(openstack.exceptions.ConflictException, match="already allocated"):
        conn.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.0.0.15"}])

    # An address of the pool that neither port holds (the automatic one is random).
    target = next(f"10.0.0.{i}" for i in range(16, 21) if f"10.0.0.{i}" != auto.fixed_ips[0]["ip_address"])
    renamed = conn.network.update_port(
        specific, name="renamed", fixed_ips=[{"subnet_id": sub.id, "ip_address": target}]
    )
    assert renamed.name == "renamed" and renamed.fixed_ips[0]["ip_address"] == target
    found = list(conn.network.ports(fixed_ips=f"ip_address={target}"))
    assert [p.id for p in found] == [specific.id]

    avail = conn.network.get_network_ip_availability(net.id)
    assert (avail.total_ips, avail.used_ips) == (11, 2)

    with pytest.raises(openstack.exceptions.ConflictException, match="One or more ports"):
        conn.network.delete_subnet(sub)
    conn.network.delete_port(auto)
    conn.network.delete_port(specific)
    conn.network.delete_subnet(sub)
    assert list(conn.network.subnets(network_id=net.id)) == []
    assert [s.id for s in conn.network.subnets(network_id=pooled_net.id)] == [from_pool.id]
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.network.get_port(specific.id)


def test_sdk_pagination_follows_links(conn):
    for i in range(5):
        conn.network.create_network(name=f"n{i}")
    assert sorted(n.name for n in conn.network.networks(limit=2)) == [f"n{i}" for i in range(5)]


def test_sdk_exhaustion_is_conflict(conn):
    net = conn.network.create_network(name="n")
    conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.9.0.0/30")
    conn.network.create_port(network_id=net.id)
    with pytest.raises(openstack.exceptions.ConflictException, match="No more IP addresses"):
        conn.network.create_port(network_id=net.id)


def openstack_cli(server, *args: str) -> subprocess.CompletedProcess:
    cmd = [OPENSTACK, "--os-auth-type", "none", "--os-endpoint", f"{server.base}/", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def run_cli(server, *args: str) -> str:
    done = openstack_cli(server, *args)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr}")
    return done.stdout


def cli_json(server, command: str) -> dict:  # type: ignore[type-arg]
    return json.loads(run_cli(server, *shlex.split(command), "-f", "json"))


@pytest.mark.slow  # 20 to 25 s: one openstack CLI process per command
def test_openstack_cli(api, server, api_backend, db_kind):
    if db_kind != "sqlite":
        pytest.skip("the CLI is exercised once per backend (SQLite); the SDK covers every database")
    net = cli_json(server, "network create cli-net")
    sub = cli_json(
        server,
        f"subnet create --network {net['id']} --subnet-range 192.168.5.0/24 "
        "--allocation-pool start=192.168.5.10,end=192.168.5.20 cli-sub",
    )
    assert sub["allocation_pools"] == [{"start": "192.168.5.10", "end": "192.168.5.20"}]
    run_cli(server, *shlex.split("subnet pool create --pool-prefix 10.30.0.0/16 --default-prefix-length 24 p"))
    other = cli_json(server, "network create cli-pooled-net")
    pooled = cli_json(server, f"subnet create --network {other['id']} --subnet-pool p --prefix-length 26 pooled")
    assert pooled["cidr"] == "10.30.0.0/26"
    port = cli_json(server, f"port create --network {net['id']} --fixed-ip subnet=cli-sub,ip-address=192.168.5.15 p1")
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "192.168.5.15"}]
    done = openstack_cli(
        server, "port", "create", "--network", net["id"], "--fixed-ip", "ip-address=192.168.5.15", "p2"
    )
    assert done.returncode != 0 and "already allocated" in done.stderr
    avail = cli_json(server, f"ip availability show {net['id']}")
    assert avail["used_ips"] == 1
