"""``pipam ipam verify`` compares allocation pools, as the README says (issue 18, item 3): a backend
whose copy of a subnet's pools differs from the core is reported, by subnet, with both sides."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from pipam.ipam.addr import to_key
from pipam.ipam.drivers.internal.models import IpamAllocationPool, IpamSubnet
from tests.helpers import net, subnet
from tests.test_migration import cli_json


@pytest.mark.parametrize("backend", ["internal"])  # builtin reads its pools from the core tables themselves
def test_verify_reports_a_pool_that_differs(db, schema_url, backend):
    n = net(db)["id"]
    s = subnet(db, n, "10.0.0.0/24", allocation_pools=[{"start": "10.0.0.10", "end": "10.0.0.100"}])
    code, result = cli_json(schema_url, backend, "ipam", "verify")
    assert code == 0 and result["clean"], result
    # The backend's copy of the pool ends one address later than the core's (a bad manual edit, a bug).
    with db.engine.begin() as conn:
        owner = conn.scalar(select(IpamSubnet.id).where(IpamSubnet.subnet_id == s["id"]))
        conn.execute(
            update(IpamAllocationPool)
            .where(IpamAllocationPool.ipam_subnet_id == owner)
            .values(last_ip="10.0.0.101", last_key=to_key(0x0A000065))
        )
    code, result = cli_json(schema_url, backend, "ipam", "verify")
    assert code == 1 and not result["clean"]
    pools = [d for d in result["differences"] if d["kind"] == "pools"]
    assert [d["subnet_id"] for d in pools] == [s["id"]], result["differences"]
    assert "10.0.0.100" in pools[0]["detail"] and "10.0.0.101" in pools[0]["detail"]
