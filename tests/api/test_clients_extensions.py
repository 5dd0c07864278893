"""The extensions through unmodified OpenStack clients: openstacksdk and the openstack CLI."""

from __future__ import annotations

import openstack
import pytest

from tests.api.test_clients import cli_json, openstack_cli, run_cli
from tests.api.wire import eui64

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


@pytest.fixture
def conn(api, server):  # type: ignore[no-untyped-def]
    connection = openstack.connect(auth_type="none", auth={"endpoint": f"{server.base}/"})
    yield connection
    connection.close()


def test_sdk_address_scopes_and_pools(conn):
    scope = conn.network.create_address_scope(name="scope", ip_version=4)
    assert (scope.ip_version, scope.is_shared) == (4, False)
    assert [s.id for s in conn.network.address_scopes(ip_version=4)] == [scope.id]
    pool = conn.network.create_subnet_pool(
        name="p", prefixes=["10.10.0.0/16"], default_prefix_length=24, address_scope_id=scope.id, is_default=True
    )
    assert (pool.address_scope_id, pool.is_default, pool.default_prefix_length) == (scope.id, True, 24)
    with pytest.raises(openstack.exceptions.ConflictException, match="unique prefixes"):
        conn.network.create_subnet_pool(name="q", prefixes=["10.10.8.0/24"], address_scope_id=scope.id)
    net = conn.network.create_network(name="n")
    sub = conn.network.create_subnet(network_id=net.id, ip_version=4, use_default_subnet_pool=True)
    assert (sub.subnet_pool_id, sub.cidr) == (pool.id, "10.10.0.0/24")
    assert conn.network.get_network(net.id).ipv4_address_scope_id == scope.id
    with pytest.raises(openstack.exceptions.ConflictException, match="subnet pools in use"):
        conn.network.delete_address_scope(scope)
    scope = conn.network.update_address_scope(scope, name="renamed")
    assert scope.name == "renamed"
    # subnetpool-prefix-ops, through the SDK's own session (the SDK has no call of its own for it).
    added = conn.network.put(f"/subnetpools/{pool.id}/add_prefixes", json={"prefixes": ["10.11.0.0/16"]}).json()
    assert added == {"prefixes": ["10.10.0.0/15"]}
    removed = conn.network.put(f"/subnetpools/{pool.id}/remove_prefixes", json={"prefixes": ["10.11.0.0/16"]}).json()
    assert removed == {"prefixes": ["10.10.0.0/16"]}
    assert conn.network.get_subnet_pool(pool.id).prefixes == ["10.10.0.0/16"]
    conn.network.delete_subnet(sub)
    conn.network.delete_subnet_pool(pool)
    conn.network.delete_address_scope(scope)
    assert list(conn.network.address_scopes()) == []


def test_sdk_networks_ports_and_revisions(conn):
    ext = conn.network.create_network(name="ext", is_router_external=True, mtu=1400)
    conn.network.create_network(name="int")
    assert (ext.is_router_external, ext.mtu) == (True, 1400)
    assert [n.name for n in conn.network.networks(is_router_external=True)] == ["ext"]
    # By id: a refused update leaves its values pending in the SDK's local object.
    with pytest.raises(openstack.exceptions.BadRequestException, match="MTU is too big"):
        conn.network.update_network(ext.id, mtu=9000)
    with pytest.raises(openstack.exceptions.PreconditionFailedException):
        conn.network.update_network(ext.id, name="x", if_revision=ext.revision_number + 3)
    ext = conn.network.update_network(ext.id, name="x", if_revision=ext.revision_number)
    assert ext.name == "x"

    before = conn.network.get_network(ext.id).revision_number
    conn.network.create_subnet(network_id=ext.id, ip_version=4, cidr="10.0.0.0/24")
    assert conn.network.get_network(ext.id).revision_number > before  # the network's subnets changed
    conn.network.create_subnet(
        network_id=ext.id, ip_version=6, cidr="2001:db8::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac"
    )
    port = conn.network.create_port(network_id=ext.id, tags=["blue"])
    assert port.tags == ["blue"]
    port = conn.network.update_port(port, mac_address="fa:16:3e:01:02:03")
    assert port.mac_address == "fa:16:3e:01:02:03"
    slaac = eui64("2001:db8::/64", "fa:16:3e:01:02:03")
    assert slaac in [f["ip_address"] for f in port.fixed_ips]
    v4 = next(f["ip_address"] for f in port.fixed_ips if "." in f["ip_address"])
    assert [p.id for p in conn.network.ports(fixed_ips=f"ip_address_substr={v4[:-1]}")] == [port.id]
    bulk = list(
        conn.network.create_ports([{"network_id": ext.id, "tags": ["a"]}, {"network_id": ext.id, "tags": ["b"]}])
    )
    assert [p.tags for p in bulk] == [["a"], ["b"]]
    with pytest.raises(openstack.exceptions.PreconditionFailedException):
        conn.network.delete_port(bulk[0], if_revision=bulk[0].revision_number + 1)
    conn.network.delete_port(bulk[0], if_revision=bulk[0].revision_number)
    assert [p.id for p in conn.network.ports(tags="a")] == []

    # Tag operations of the SDK: set, add, check, remove, add many (POST), remove all.
    net = conn.network.get_network(ext.id)
    conn.network.set_tags(net, ["red", "green"])
    conn.network.add_tag(net, "black.or.white")
    assert conn.network.check_tag(net, "red")
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.network.check_tag(net, "purple")
    conn.network.remove_tag(net, "green")
    conn.network.add_tags(net, ["yellow", "red"])
    assert sorted(conn.network.get_tags(net)) == ["black.or.white", "red", "yellow"]
    assert [n.id for n in conn.network.networks(tags="red,yellow")] == [net.id]
    conn.network.remove_all_tags(net)
    assert conn.network.get_tags(net) == []


@pytest.mark.slow  # 30 to 45 s: one openstack CLI process per command
def test_cli_extensions(api, server, db_kind):
    if db_kind != "sqlite":
        pytest.skip("the CLI is exercised once per backend (SQLite); the SDK covers every database")
    scope = cli_json(server, "address scope create --ip-version 4 cli-scope")
    pool = cli_json(
        server,
        "subnet pool create --pool-prefix 10.70.0.0/16 --default-prefix-length 26 --address-scope cli-scope "
        "--default cli-pool",
    )
    assert (pool["address_scope_id"], pool["is_default"]) == (scope["id"], True)
    net = cli_json(server, "network create --external --mtu 1450 cli-ext")
    assert (net["router:external"], net["mtu"]) == (True, 1450)
    sub = cli_json(server, f"subnet create --network {net['id']} --use-default-subnet-pool --ip-version 4 cli-sub")
    assert (sub["subnetpool_id"], sub["cidr"]) == (pool["id"], "10.70.0.0/26")
    assert cli_json(server, f"network show {net['id']}")["ipv4_address_scope"] == scope["id"]
    listed = cli_json(server, "network list --external")
    assert [n["ID"] for n in listed] == [net["id"]]
    # port create --tag sends the tags in the create body (tag-ports-during-bulk-creation).
    port = cli_json(
        server, f"port create --network {net['id']} --tag red --tag blue --mac-address fa:16:3e:0a:0b:0c p1"
    )
    assert sorted(port["tags"]) == ["blue", "red"]
    run_cli(server, "port", "set", "--mac-address", "fa:16:3e:0a:0b:0d", "p1")
    assert cli_json(server, "port show p1")["mac_address"] == "fa:16:3e:0a:0b:0d"
    run_cli(server, "network", "set", "--tag", "green", "--mtu", "1400", "cli-ext")
    shown = cli_json(server, "network show cli-ext")
    assert (shown["tags"], shown["mtu"]) == (["green"], 1400)
    done = openstack_cli(server, "address", "scope", "delete", "cli-scope")
    assert done.returncode != 0 and "in use" in done.stderr
