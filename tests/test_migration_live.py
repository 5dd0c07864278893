"""Two live servers creating ports while the migration runs: fenced requests get 503, none succeeds
against the wrong backend, and every address handed out is accounted for."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from pipam.db.models import IPAllocation
from tests import dataset
from tests.helpers import net, subnet
from tests.server import Server

PIPAM = str(Path(sys.executable).with_name("pipam"))
OTHER = {"builtin": "internal", "internal": "builtin"}


class Clients:
    """Threads creating ports through the given servers until stopped; every answer is kept."""

    def __init__(self, servers: list[Server], network_id: str, per_server: int = 2) -> None:
        self.results: list[tuple[int, str, str]] = []  # (status, ip or error type, port id or retry-after)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._loop, args=(s.base, network_id), daemon=True)
            for s in servers
            for _ in range(per_server)
        ]

    def _loop(self, base: str, network_id: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                body = r.json()
                if r.status_code == 201:
                    p = body["port"]
                    entry = (201, p["fixed_ips"][0]["ip_address"], p["id"])
                else:
                    entry = (r.status_code, body["NeutronError"]["type"], r.headers.get("retry-after", ""))
                with self.lock:
                    self.results.append(entry)
                if r.status_code == 503:
                    time.sleep(0.05)

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.mark.slow
def test_two_servers_during_migration(db, schema_url, backend, tmp_path):
    target = OTHER[backend]
    dataset.build_many(db, 20, 2)
    n = net(db)["id"]
    subnet(db, n, "10.200.0.0/22")
    servers = [Server(schema_url, backend, tmp_path / f"a{i}.log") for i in range(2)]
    try:
        with Clients(servers, n) as clients:
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
        first_phase = list(clients.results)
    finally:
        for s in servers:
            s.stop()
    servers = [Server(schema_url, target, tmp_path / f"b{i}.log") for i in range(2)]
    try:
        with Clients(servers, n) as clients:
            time.sleep(1.5)
        second_phase = list(clients.results)
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
