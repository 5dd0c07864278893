"""PostgreSQL failover under load: ``pipam serve`` processes configured with both hosts of a private
primary/standby pair (``target_session_attrs=read-write``), the primary killed with SIGKILL, the
standby promoted. The servers answer 503 while there is no primary and 201 from the new primary
without being restarted; with synchronous replication no acknowledged port is lost.

Figures printed here (run with ``-s``) are the ones quoted in docs/deployment.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from pipam.db.engine import make_engine
from pipam.db.models import IPAllocation
from tests.load import PortLoad
from tests.private_postgres import PostgresPair
from tests.server import Server

PIPAM = str(Path(sys.executable).with_name("pipam"))
BACKEND = "internal"

pytestmark = [pytest.mark.slow, pytest.mark.pgfailover, pytest.mark.xdist_group("pgfailover")]


@pytest.fixture(params=[True, False], ids=["synchronous", "asynchronous"])
def pair(request: pytest.FixtureRequest) -> Iterator[PostgresPair]:
    started = time.monotonic()
    pg = PostgresPair(synchronous=request.param)
    print(f"\nprimary + standby ({'sync' if request.param else 'async'}) up in {time.monotonic() - started:.1f} s")
    try:
        yield pg
    finally:
        pg.destroy()


def pipam(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": BACKEND}
    env.pop("PIPAM_CONFIG", None)
    return subprocess.run([PIPAM, *args], env=env, capture_output=True, text=True, timeout=120)


def test_failover_under_load(pair: PostgresPair, tmp_path: Path) -> None:
    done = pipam("db", "upgrade", url=pair.url)
    assert done.returncode == 0, done.stdout + done.stderr
    servers = [Server(pair.url, BACKEND, tmp_path / f"serve{i}.log") for i in (1, 2)]
    # A server given only the standby's address (no target_session_attrs): it reads, but every write
    # is refused by PostgreSQL (read_only_sql_transaction), which must be a 503, not a 500.
    assert pair.standby is not None
    on_standby = Server(pair.standby.url, BACKEND, tmp_path / "standby.log")
    try:
        bases = [s.base for s in servers]
        with httpx.Client(base_url=bases[0], timeout=30) as client:
            network_id = client.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]["id"]
            r = client.post(
                "/v2.0/subnets", json={"subnet": {"network_id": network_id, "cidr": "10.80.0.0/16", "ip_version": 4}}
            )
            assert r.status_code == 201, r.text
        pair.wait_streaming("sync" if pair.synchronous else "async")
        with httpx.Client(base_url=on_standby.base, timeout=30) as client:
            assert client.get(f"/v2.0/networks/{network_id}").status_code == 200
            r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
            assert (r.status_code, r.json()["NeutronError"]["type"]) == (503, "DatabaseUnavailable"), r.text
            assert r.headers["retry-after"].isdigit()

        with PortLoad(bases, network_id, per_base=2, churn=True) as load:
            time.sleep(2)
            killed_at = time.monotonic()
            pair.kill_primary()
            time.sleep(1.5)
            # No primary: what a load balancer's health check sees.
            gap_health = [httpx.get(f"{b}/healthz", timeout=30).status_code for b in bases]
            time.sleep(0.5)
            promote_at = time.monotonic()
            promote_took = pair.promote()
            promoted_at = time.monotonic()
            time.sleep(3)
        answers = list(load.answers)
        back_health = [httpx.get(f"{b}/healthz", timeout=30).status_code for b in bases]
    finally:
        for s in [*servers, on_standby]:
            s.stop()

    assert gap_health == [503, 503] and back_health == [200, 200], (gap_health, back_health)
    creates = Counter((a.status, a.error) for a in answers if a.op == "create")
    deletes = Counter(a.status for a in answers if a.op == "delete")
    assert {s for s, _ in creates} <= {201, 409, 503}, creates
    assert set(deletes) <= {204, 404, 503}, deletes
    # Sent into the gap and answered before the promotion began: nothing could have served them. One sent
    # just before the promotion may be served by the new primary (seen once on a loaded CI machine: a 204).
    during = Counter(a.status for a in answers if killed_at + 0.5 < a.started and a.answered < promote_at)
    assert during and set(during) == {503}, during
    assert all(a.extra.isdigit() for a in answers if a.status == 503), "503 without Retry-After"
    after = load.window(promoted_at + 1, float("inf"))
    assert after and set(after) <= {201, 204, 404}, f"the servers did not follow the promotion: {after}"
    for base in bases:
        assert set(load.window(promoted_at + 1, float("inf"), base)) & {201, 204}, base
    # Seconds from the start of the promotion to the first port the new primary acknowledged.
    back_in = min(a.answered for a in load.created() if a.started > promote_at) - promote_at

    # What the new primary holds, against what clients were told.
    created = {a.extra: a.detail for a in load.created()}
    gone = load.deleted()
    expected = {pid: ip for pid, ip in created.items() if pid not in gone}
    engine = make_engine(pair.url)
    try:
        with engine.connect() as conn:
            held = dict(
                conn.execute(
                    select(IPAllocation.port_id, IPAllocation.ip_address).where(IPAllocation.network_id == network_id)
                ).all()
            )
    finally:
        engine.dispose()
    lost = [pid for pid in expected if held.get(pid) != expected[pid]]
    resurrected = gone & set(held)
    doubles = load.double_allocations()
    print(
        f"\nfailover ({'sync' if pair.synchronous else 'async'}): promote took {promote_took:.2f} s; first 201 "
        f"from the new primary {back_in:.2f} s after the promotion began; creates {dict(creates)}, deletes "
        f"{dict(deletes)}; acknowledged ports lost {len(lost)}, deleted ports back {len(resurrected)}, "
        f"addresses handed out twice {len(doubles)}, slowest request {load.slowest:.1f} s"
    )
    done = pipam("ipam", "verify", url=pair.url)
    assert done.returncode == 0, done.stdout + done.stderr
    if pair.synchronous:
        # The point of synchronous replication: what a client was told, the new primary has.
        assert not lost and not resurrected and not doubles
        unknown = sum(1 for a in answers if a.op == "create" and a.status == 503)
        assert len(set(held) - set(expected)) <= unknown
