"""Two live servers creating ports while the migration runs: fenced requests get 503, none succeeds
against the wrong backend, and every address handed out is accounted for."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from pipam.db.models import IPAllocation
from tests import dataset
from tests.helpers import net, subnet
from tests.load import PortLoad
from tests.server import Server

PIPAM = str(Path(sys.executable).with_name("pipam"))
OTHER = {"builtin": "internal", "internal": "builtin"}


@pytest.mark.slow
def test_two_servers_during_migration(db, schema_url, backend, tmp_path):
    target = OTHER[backend]
    dataset.build_many(db, 20, 2)
    n = net(db)["id"]
    subnet(db, n, "10.200.0.0/22")
    servers = [Server(schema_url, backend, tmp_path / f"a{i}.log") for i in range(2)]
    try:
        with PortLoad([s.base for s in servers], n) as clients:
            time.sleep(1.0)
            env = {
                **os.environ,
                "PIPAM_DATABASE_URL": schema_url,
                "PIPAM_IPAM_DRIVER": backend,
                "PIPAM_TEST_PAUSE_AT": "after-fence:1.5",
            }
            done = subprocess.run(
                [PIPAM, "ipam", "migrate", "--to", target, "--yes", "--batch-size", "2"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            time.sleep(1.0)  # the old servers now refuse: configured for the old backend
        first_phase = [a[1:] for a in clients.answers]
    finally:
        for s in servers:
            s.stop()
    servers = [Server(schema_url, target, tmp_path / f"b{i}.log") for i in range(2)]
    try:
        with PortLoad([s.base for s in servers], n) as clients:
            time.sleep(1.5)
        second_phase = [a[1:] for a in clients.answers]
    finally:
        for s in servers:
            s.stop()

    statuses = Counter((s, t) for s, t, _ in first_phase if s != 201)
    assert set(statuses) <= {(503, "IpamMigrationInProgress"), (503, "IpamBackendMismatch")}, statuses
    assert statuses[(503, "IpamMigrationInProgress")] > 0, "no request met the fence"
    assert statuses[(503, "IpamBackendMismatch")] > 0, "no request reached an old server after the switch"
    assert all(extra.isdigit() for s, _, extra in first_phase if s == 503)  # Retry-After
    assert any(s == 201 for s, _, _ in first_phase) and any(s == 201 for s, _, _ in second_phase)
    assert all(s == 201 for s, _, _ in second_phase), Counter(t for s, t, _ in second_phase if s != 201)

    handed_out = {(ip, pid) for s, ip, pid in first_phase + second_phase if s == 201}
    ips = [ip for ip, _ in handed_out]
    assert len(ips) == len(set(ips)), "an address was handed out twice"
    with db.session(write=False) as session:
        held = set(
            session.execute(
                select(IPAllocation.ip_address, IPAllocation.port_id).where(IPAllocation.network_id == n)
            ).all()
        )
    assert held == handed_out  # every 201 is in the core tables, and nothing else is
    env = {**os.environ, "PIPAM_DATABASE_URL": schema_url, "PIPAM_IPAM_DRIVER": target}
    verify = subprocess.run([PIPAM, "ipam", "verify"], env=env, capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout
