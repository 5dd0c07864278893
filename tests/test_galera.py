"""Pipam on a private 3-node MariaDB Galera cluster: one ``pipam serve`` per node, clients writing
through all three, nodes killed with SIGKILL (one: the others go on; two: quorum lost, only 503s),
restarted, and the data checked on every node afterwards; the migration fence against address changes
on other nodes (docs/architecture.md, "The fence").

Figures printed here (run with ``-s``) are the ones quoted in docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pymysql
import pytest
from sqlalchemy import select, text

from pipam.config import load_settings
from pipam.db import engine as db_engine
from pipam.db.engine import make_engine
from pipam.db.models import IPAllocation
from pipam.errors import IpamMigrationInProgress
from pipam.ipam import state
from pipam.service.database import Database
from pipam.testing import local
from tests.galera import GaleraCluster
from tests.held_change import HeldChange, wait_until_blocked
from tests.helpers import records_of
from tests.load import Answer, PortLoad, make_subnet, port_in_subnet
from tests.server import Server

PIPAM = str(Path(sys.executable).with_name("pipam"))
BACKEND = "internal"

pytestmark = [pytest.mark.slow, pytest.mark.galera, pytest.mark.xdist_group("galera")]


@pytest.fixture
def galera(galera_cluster: GaleraCluster) -> GaleraCluster:
    # A test that failed half-way may have left nodes down: each test starts from 3 synced nodes.
    galera_cluster.heal()
    return galera_cluster


def pipam(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": BACKEND}
    env.pop("PIPAM_CONFIG", None)
    return subprocess.run([PIPAM, *args], env=env, capture_output=True, text=True, timeout=120)


def new_database(cluster: GaleraCluster) -> str:
    """A fresh database on the cluster, at the newest schema (``pipam db upgrade`` through node 1)."""
    name = f"pipam_{uuid.uuid4().hex[:8]}"
    with cluster.connect(1) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    done = pipam("db", "upgrade", url=cluster.url(1, name))
    assert done.returncode == 0, done.stdout + done.stderr
    return name


def start_servers(cluster: GaleraCluster, name: str, tmp_path: Path) -> list[Server]:
    servers: list[Server] = []
    try:
        for node in range(1, cluster.size + 1):
            # DEBUG: the servers log every transaction they rerun, counted by retries() below.
            servers.append(Server(cluster.url(node, name), BACKEND, tmp_path / f"serve{node}.log", log_level="DEBUG"))
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: list[Server]) -> None:
    for s in servers:
        s.stop()


def retries(servers: list[Server]) -> Counter[str]:
    """Transactions the servers reran, by cause: a MySQL error code (1213: a deadlock, or on Galera a
    certification failure), or a lost compare-and-swap race."""
    found: Counter[str] = Counter()
    for s in servers:
        for line in s.log_path.read_text(errors="replace").splitlines():
            if "retrying transaction" in line:
                code = re.search(r"\((\d{4}),", line)
                found[code.group(1) if code else "lost race"] += 1
    return found


def healthz(base: str) -> int:
    return httpx.get(f"{base}/healthz", timeout=30).status_code


def statuses(load: PortLoad) -> tuple[Counter[tuple[int, str]], Counter[int]]:
    creates = Counter((a.status, a.error) for a in load.creates())
    deletes = Counter(a.status for a in load.answers if a.op == "delete")
    return creates, deletes


def check_answers(load: PortLoad) -> None:
    """Creates: 201, 409, or 503 with Retry-After; deletes: 204 or 503, and 404 only for a port whose
    earlier delete got 503 (it had committed after all). Never a 500, no address held twice."""
    creates, deletes = statuses(load)
    assert {s for s, _ in creates} <= {201, 409, 503}, creates
    assert all(a.extra.isdigit() for a in load.answers if a.status == 503), "503 without Retry-After"
    assert set(deletes) <= {204, 404, 503}, deletes
    tried = [a for a in load.answers if a.op == "delete"]
    retried = {a.detail for a in tried if a.status == 503}
    assert all(a.detail in retried for a in tried if a.status == 404)
    assert not load.double_allocations()


def check_every_node(
    cluster: GaleraCluster, name: str, network_id: str, load: PortLoad, killed_at: float | None = None
) -> None:
    """Each node holds exactly the ports the clients were told exist (plus at most one per create
    answered 503, whose commit may have happened), the same on all nodes; ``pipam ipam verify`` is
    clean on each."""
    created = {a.extra: a.detail for a in load.created()}
    gone = load.deleted()
    expected = {pid: ip for pid, ip in created.items() if pid not in gone}
    unknown = sum(1 for a in load.creates() if a.status == 503)
    seen = []
    for node in range(1, cluster.size + 1):
        engine = make_engine(cluster.url(node, name))
        try:
            with engine.connect() as conn:
                held = dict(
                    conn.execute(
                        select(IPAllocation.port_id, IPAllocation.ip_address).where(
                            IPAllocation.network_id == network_id
                        )
                    ).all()
                )
        finally:
            engine.dispose()
        # The messages (built only when an assertion fails) say when each port was answered.
        lost = {pid for pid, ip in expected.items() if held.get(pid) != ip}
        assert not lost, (
            f"node {node} lost {len(lost)} acknowledged ports: {acknowledged(load, lost, 'create', killed_at)}"
        )
        kept = gone & set(held)
        assert not kept, (
            f"node {node} still holds {len(kept)} deleted ports: {acknowledged(load, kept, 'delete', killed_at)}"
        )
        assert len(set(held) - set(expected)) <= unknown
        seen.append(held)
        done = pipam("ipam", "verify", url=cluster.url(node, name))
        assert done.returncode == 0, f"verify on node {node}: {done.stdout}{done.stderr}"
    assert all(h == seen[0] for h in seen), "the nodes disagree"


def acknowledged(load: PortLoad, ports: set[str], op: str, killed_at: float | None) -> str:
    """When (from the first kill, else from the load's start) and through which server each of
    ``ports`` got its create or delete answer: a failure's message says whether they were answered just
    before nodes died or at any time."""
    origin = killed_at if killed_at is not None else min((a.started for a in load.answers), default=0.0)
    found = sorted(
        (a.answered - origin, a.base)
        for a in load.answers
        if a.op == op and a.status in (201, 204) and (a.extra if op == "create" else a.detail) in ports
    )
    since = "the kill" if killed_at is not None else "the load's start"
    return f"answered (seconds from {since}) " + ", ".join(f"by {base} at {at:+.2f}" for at, base in found[:20])


def longest_gap(answers: list[Answer], start: float, end: float) -> float:
    """Longest time without a 201 among the requests started in [start, end]."""
    times = sorted(a.started for a in answers if a.status == 201 and start <= a.started <= end)
    points = [start, *times, end]
    return max(b - a for a, b in itertools.pairwise(points))


def test_sessions_get_causal_reads(galera: GaleraCluster) -> None:
    engine = make_engine(galera.url(2))
    plain = make_engine(galera.url(2), causal_reads=False)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT @@session.wsrep_sync_wait")).scalar_one() == 1
        with plain.connect() as conn:
            assert conn.execute(text("SELECT @@session.wsrep_sync_wait")).scalar_one() == 0
    finally:
        engine.dispose()
        plain.dispose()


def test_a_node_that_may_lose_confirmed_commits_is_named(galera: GaleraCluster) -> None:
    """A node with innodb_flush_log_at_trx_commit = 0 gets one warning per process, naming it; a node
    that writes each commit out (the test cluster's 2) gets none."""
    lossy = galera.nodes[1]
    db_engine._warned_lossy.clear()  # an earlier run of this test in this process was warned already
    with galera.connect(2) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.innodb_flush_log_at_trx_commit")
        (configured,) = cur.fetchone()
        cur.execute("SET GLOBAL innodb_flush_log_at_trx_commit = 0")
    try:
        with records_of("pipam.db.engine", logging.WARNING) as records:
            for node in (1, 2, 2):
                engine = make_engine(galera.url(node))
                try:
                    with engine.connect() as conn:
                        conn.execute(text("SELECT 1"))
                finally:
                    engine.dispose()
    finally:
        with galera.connect(2) as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL innodb_flush_log_at_trx_commit = %s", (configured,))
    messages = [r.getMessage() for r in records]
    warned = [m for m in messages if "innodb_flush_log_at_trx_commit" in m]
    assert len(warned) == 1, messages
    assert f"127.0.0.1:{lossy.port} has innodb_flush_log_at_trx_commit = 0" in warned[0]


def test_one_node_killed_and_rejoining(galera: GaleraCluster, tmp_path: Path) -> None:
    name = new_database(galera)
    servers = start_servers(galera, name, tmp_path)
    bases = [s.base for s in servers]
    try:
        network_id, _ = make_subnet(bases[0])
        with PortLoad(bases, network_id, per_base=2, churn=True) as load:
            time.sleep(3)
            killed_at = time.monotonic()
            galera.kill(3)
            time.sleep(9)
            # What a load balancer sees: the server on the dead node fails its health check.
            health_down = [healthz(b) for b in bases]
            restart_at = time.monotonic()
            rejoin = galera.restart(3)
            synced_at = time.monotonic()
            time.sleep(4)
        health_up = [healthz(b) for b in bases]
        check_answers(load)
        assert health_down == [200, 200, 503] and health_up == [200, 200, 200], (health_down, health_up)
        others = load.creates(bases[0]) + load.creates(bases[1])
        down = load.window(killed_at + 0.5, restart_at, bases[2])
        assert down and set(down) == {503}, down
        pause = longest_gap(others, killed_at, restart_at)
        # The survivors stall until the group evicts the dead node (evs.suspect_timeout, 5 s), then go on.
        assert pause < 12, f"servers on the surviving nodes paused {pause:.1f} s"
        assert any(a.status == 201 for a in others if killed_at + pause < a.started < restart_at)
        after = load.window(synced_at + 1, float("inf"))
        assert after and set(after) <= {201, 204, 404}, after
        assert load.window(synced_at + 1, float("inf"), bases[2]), "server on node 3 did not recover"
        creates, deletes = statuses(load)
        print(
            f"\none node killed: survivors paused {pause:.1f} s; node 3 rejoined (recover + IST) in "
            f"{rejoin:.1f} s; creates {dict(creates)}, deletes {dict(deletes)}, slowest request "
            f"{load.slowest:.1f} s, startup of the cluster {galera.startup_seconds:.1f} s, transactions "
            f"rerun {dict(retries(servers))}"
        )
    finally:
        stop_all(servers)
    check_every_node(galera, name, network_id, load, killed_at)


def test_quorum_lost_and_regained(galera: GaleraCluster, tmp_path: Path) -> None:
    name = new_database(galera)
    servers = start_servers(galera, name, tmp_path)
    bases = [s.base for s in servers]
    try:
        network_id, _ = make_subnet(bases[0])
        with PortLoad(bases, network_id, per_base=2, churn=True) as load:
            time.sleep(3)
            killed_at = time.monotonic()
            galera.kill(2)
            galera.kill(3)
            time.sleep(11)
            # Node 1 is up but without quorum: its server must fail the health check too.
            health_down = [healthz(b) for b in bases]
            restart_at = time.monotonic()
            galera.restart(2, wait=False)
            galera.restart(3, wait=False)
            galera.wait_synced()
            synced_at = time.monotonic()
            time.sleep(4)
        health_up = [healthz(b) for b in bases]
        check_answers(load)
        assert health_down == [503, 503, 503] and health_up == [200, 200, 200], (health_down, health_up)
        # Quorum lost: after the in-flight commits fail, nothing commits anywhere.
        down = load.window(killed_at + 8, restart_at)
        assert down and set(down) == {503}, down
        after = load.window(synced_at + 1, float("inf"))
        assert after and set(after) <= {201, 204, 404}, after
        for base in bases:
            assert load.window(synced_at + 1, float("inf"), base), f"{base} did not recover"
        creates, deletes = statuses(load)
        print(
            f"\nquorum lost: requests in flight stalled up to {load.slowest:.1f} s, then 503; regained "
            f"{synced_at - restart_at:.1f} s after restarting both (no manual bootstrap); creates "
            f"{dict(creates)}, deletes {dict(deletes)}, transactions rerun {dict(retries(servers))}"
        )
    finally:
        stop_all(servers)
    check_every_node(galera, name, network_id, load, killed_at)


def test_causal_reads_across_nodes(galera: GaleraCluster, tmp_path: Path) -> None:
    """A subnet created through node 1 is usable at once through nodes 2 and 3, while other clients
    keep node 1 busy (so that the other nodes apply its write sets a little behind)."""
    name = new_database(galera)
    servers = start_servers(galera, name, tmp_path)
    bases = [s.base for s in servers]
    failures: list[str] = []
    took: list[float] = []

    def create(client: httpx.Client, network_id: str, subnet_id: str) -> None:
        t0 = time.monotonic()
        failure = port_in_subnet(client, network_id, subnet_id)
        took.append(time.monotonic() - t0)
        if failure:
            failures.append(failure)

    try:
        background, _ = make_subnet(bases[0], "172.16.0.0/12")
        clients = [httpx.Client(base_url=b, timeout=30) for b in bases[1:]]
        try:
            with PortLoad([bases[0]], background, per_base=2, churn=True):
                for i in range(300):
                    network_id, subnet_id = make_subnet(bases[0], f"10.{i // 256}.{i % 256}.0/24")
                    threads = [threading.Thread(target=create, args=(c, network_id, subnet_id)) for c in clients]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
        finally:
            for c in clients:
                c.close()
    finally:
        stop_all(servers)
    took.sort()
    print(
        f"\ncausal reads: {len(took)} port creates on nodes 2/3 right after the subnet on node 1: "
        f"{len(failures)} failed; median {took[len(took) // 2] * 1000:.1f} ms, "
        f"p99 {took[int(len(took) * 0.99)] * 1000:.1f} ms"
    )
    assert not failures, failures[:5]


def test_causal_reads_on_a_lagging_node(galera: GaleraCluster, tmp_path: Path) -> None:
    """Node 2 is held behind on purpose (FLUSH TABLES WITH READ LOCK pauses its applier): a port
    create through it right after the subnet's create through node 1 waits for the subnet instead of
    reading the old state. Without causal reads this fails every time (404, or a port without
    address); the test above sees it only now and then (0-2 in 600 measured)."""
    name = new_database(galera)
    servers = start_servers(galera, name, tmp_path)
    try:
        with httpx.Client(base_url=servers[1].base, timeout=30) as client:
            # Warm up server 2's connection first, so that the lock below pauses only the applier.
            assert client.get("/v2.0/networks").status_code == 200
            lock = galera.connect(2)
            try:
                with lock.cursor() as cur:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
                network_id, subnet_id = make_subnet(servers[0].base)
                outcome: list[str | None] = []
                t = threading.Thread(target=lambda: outcome.append(port_in_subnet(client, network_id, subnet_id)))
                t.start()
                time.sleep(1)
                with lock.cursor() as cur:
                    cur.execute("UNLOCK TABLES")
                t.join(timeout=30)
            finally:
                lock.close()
        assert outcome == [None]
    finally:
        stop_all(servers)


def test_node_left_behind_answers_503(galera: GaleraCluster, tmp_path: Path) -> None:
    """A node that cannot catch up (its applier blocked) makes causal reads time out: its server must
    answer 503 after that one timeout (repl.causal_read_timeout, 5 s in this cluster), not retry it
    db_retries times, and be healthy again as soon as the node has caught up."""
    name = new_database(galera)
    servers = start_servers(galera, name, tmp_path)
    try:
        network_id, _ = make_subnet(servers[0].base)
        assert healthz(servers[1].base) == 200
        lock = galera.connect(2)
        try:
            with lock.cursor() as cur:
                cur.execute("FLUSH TABLES WITH READ LOCK")
            # A write through node 1 that node 2 cannot apply while the lock is held.
            make_subnet(servers[0].base, "10.61.0.0/16")
            t0 = time.monotonic()
            r = httpx.post(f"{servers[1].base}/v2.0/ports", json={"port": {"network_id": network_id}}, timeout=60)
            took = time.monotonic() - t0
            assert (r.status_code, r.json()["NeutronError"]["type"]) == (503, "DatabaseUnavailable"), r.text
            assert took < 15, f"answered after {took:.1f} s"
            assert healthz(servers[1].base) == 503
            assert healthz(servers[0].base) == 200
        finally:
            with lock.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            lock.close()
        assert healthz(servers[1].base) == 200
        print(f"\nnode left behind: its server answered 503 after {took:.1f} s")
    finally:
        stop_all(servers)


# --- the migration fence under multi-master writes --------------------------------------------------
#
# An address change writes one ``ipam_gate`` slot and reads the state from it (pipam.ipam.state.enter);
# the fence writes every slot. On Galera locks are local to a node, so the fence raised on node 1 does not
# wait for a change in flight on node 2; the two writes meet in certification instead. The tests below
# hold a change open after it entered the gate and raise the fence on another node, in the two orders in
# which node 2 can learn of the fence; then many changes on nodes 2 and 3 through a real migration.

FENCE = "repair-galerafencetest"  # a fence holder without a migration record, as a repair holds it


def database(url: str) -> Database:
    return Database(load_settings(database_url=url, ipam_driver=BACKEND))


def last_committed(cluster: GaleraCluster, node: int) -> int:
    return int(cluster.status(node)["wsrep_last_committed"])


def raise_fence(db: Database) -> None:
    db.runner.run(lambda tx: state.raise_fence(tx.session, FENCE, "test of the fence on Galera"))


def lower_fence(db: Database) -> None:
    db.runner.run(lambda tx: state.lower_fence(tx.session, FENCE))


def mysql_code(exc: BaseException | None) -> int | None:
    """The MySQL error code under a failed transaction (the runner wraps it once it gives up)."""
    while exc is not None and getattr(exc, "orig", None) is None:
        exc = exc.__cause__
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def ports_on_nodes(cluster: GaleraCluster, name: str, network_id: str) -> list[dict[str, str]]:
    """Port id -> address as each node holds them (read with causal reads, so each node is current)."""
    held = []
    for node in range(1, cluster.size + 1):
        engine = make_engine(cluster.url(node, name))
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(IPAllocation.port_id, IPAllocation.ip_address).where(IPAllocation.network_id == network_id)
                )
                held.append(dict(rows.all()))
        finally:
            engine.dispose()
    return held


def verify_every_node(cluster: GaleraCluster, name: str, backend: str | None = None) -> None:
    for node in range(1, cluster.size + 1):
        args = ["ipam", "verify", *(["--backend", backend] if backend else [])]
        done = pipam(*args, url=cluster.url(node, name))
        assert done.returncode == 0, f"verify on node {node}: {done.stdout}{done.stderr}"


@contextlib.contextmanager
def applier_held(cluster: GaleraCluster, name: str, node: int) -> Iterator[Callable[[], None]]:
    """Keep ``node`` from applying other nodes' write sets from the next one on, while it still takes
    local commits (which FLUSH TABLES WITH READ LOCK would block): a session with replication off
    (``wsrep_on=OFF``, so that no replicated write aborts it) locks a row of a table of its own, and the
    caller makes node 1 update that row: the applier waits behind the lock, every later write set
    waits behind it in commit order. Yields the function that writes that row through node 1."""
    with cluster.connect(1, name) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE applier_blocker (id INT PRIMARY KEY, n INT NOT NULL)")
        cur.execute("INSERT INTO applier_blocker VALUES (1, 0)")
    target = last_committed(cluster, 1)
    while last_committed(cluster, node) < target:
        time.sleep(0.05)
    # Longer than innodb_lock_wait_timeout would make the applier give up and the node leave the cluster.
    lock = cluster.connect(node, name, timeout=30)
    try:
        with lock.cursor() as cur:
            cur.execute("SET SESSION wsrep_on = OFF")
            cur.execute("BEGIN")
            cur.execute("SELECT n FROM applier_blocker WHERE id = 1 FOR UPDATE")

        def write_row() -> None:
            with cluster.connect(1, name) as conn, conn.cursor() as cur:
                cur.execute("UPDATE applier_blocker SET n = n + 1 WHERE id = 1")

        yield write_row
    finally:
        with contextlib.suppress(pymysql.Error):
            lock.rollback()
        lock.close()
        cluster.wait_synced()


@pytest.mark.parametrize("where", ["same node", "other node, fence applied", "other node, fence not yet applied"])
def test_fence_against_a_change_in_flight(galera: GaleraCluster, where: str) -> None:
    """A port create on node 2 (node 1 in the first case) has entered the gate and allocated; the fence
    goes up through node 1; then the create commits. It must either commit before the fence (the fence
    waits for it), or fail (1213: aborted by the fence's write set, or failed certification against it)
    and, rerun, meet the fence. Either way no address is committed through the backend after the fence,
    and every node verifies clean."""
    name = new_database(galera)
    fence_db = database(galera.url(1, name))
    change_node = 1 if where == "same node" else 2
    try:
        network_id = fence_db.run(lambda u: local.create(u, "network", {"name": "n"}))["id"]
        subnet = {"network_id": network_id, "cidr": "10.70.0.0/24", "ip_version": 4}
        fence_db.run(lambda u: local.create(u, "subnet", subnet))
        galera.wait_synced()
        before = galera.status(2)
        change = HeldChange(database(galera.url(change_node, name)), network_id)
        try:
            fence = threading.Thread(target=raise_fence, args=(fence_db,), daemon=True)
            if where == "same node":
                # One server: the fence's write waits for the slot's row lock the change holds.
                fence.start()
                wait_until_blocked(galera.url(1, name), fence)
                assert change.commit(60) and change.committed, change.error
                fence.join(60)
                assert not fence.is_alive()
            elif where == "other node, fence applied":
                # Node 2 applies the fence's write set while the change holds a slot: the applier aborts
                # the change (a replicated write always wins over a local transaction's lock).
                fence.start()
                fence.join(60)
                assert not fence.is_alive(), "the fence waited for a change on another node"
                target = last_committed(galera, 1)
                while last_committed(galera, 2) < target:
                    time.sleep(0.05)
                assert change.commit(60)
            else:
                # Node 2 has not applied the fence when the change commits: the change's write set reaches
                # certification after the fence's, both write the change's slot, and the change has not
                # seen the fence (its last seen position is before it): it fails certification.
                with applier_held(galera, name, 2) as write_row:
                    write_row()
                    fence.start()
                    fence.join(60)
                    assert not fence.is_alive(), "the fence waited for a change on another node"
                    assert last_committed(galera, 2) < last_committed(galera, 1), "node 2 applied the fence"
                    # Certification does not wait for the applier; a change that passed it would wait
                    # (in commit order) until the lock is released below, and then commit.
                    ended = change.commit(15)
                    assert last_committed(galera, 2) < last_committed(galera, 1), "node 2 applied the fence"
                assert ended or change.commit(60)
            if where != "same node":
                assert not change.committed, "an address change committed after the fence"
                assert mysql_code(change.error) == 1213, repr(change.error)
                # Which of Galera's two mechanisms stopped it, by node 2's own counters.
                after = galera.status(2)
                counter = "wsrep_local_bf_aborts" if where.endswith("fence applied") else "wsrep_local_cert_failures"
                assert int(after[counter]) > int(before[counter]), counter
                print(f"\n{where}: the change failed ({counter} +1): {change.error.__cause__}")
                # Rerun as a server would: now it meets the fence.
                with pytest.raises(IpamMigrationInProgress):
                    change.db.run(lambda u: local.create(u, "port", {"network_id": network_id}))
        finally:
            change.close()
            change.db.dispose()
        assert change.port is not None
        port_id, address = change.port["id"], change.port["fixed_ips"][0]["ip_address"]
        for node, held in enumerate(ports_on_nodes(galera, name, network_id), start=1):
            assert held == ({port_id: address} if change.committed else {}), f"node {node}: {held}"
        verify_every_node(galera, name)
    finally:
        with contextlib.suppress(Exception):
            lower_fence(fence_db)
        fence_db.dispose()
    verify_every_node(galera, name)


def migrate(url: str, target: str) -> subprocess.CompletedProcess[str]:
    """``pipam ipam migrate`` holding the fence 1.5 s longer than it needs, so that requests surely meet it."""
    env = {**os.environ, "PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": BACKEND}
    env.pop("PIPAM_CONFIG", None)
    hooks = ["--pause-at", "after-fence", "--pause", "1.5"]
    command = ["ipam", "migrate", "--to", target, "--yes", "--batch-size", "20"]
    return subprocess.run(
        [sys.executable, "-m", "tests.migrate_hooks", *hooks, "--", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def conflicts(cluster: GaleraCluster) -> Counter[str]:
    """Galera's conflict counters summed over the nodes: local transactions aborted by a replicated
    write set, and write sets that failed certification."""
    total: Counter[str] = Counter()
    for node in range(1, cluster.size + 1):
        s = cluster.status(node)
        total["bf_aborts"] += int(s["wsrep_local_bf_aborts"])
        total["cert_failures"] += int(s["wsrep_local_cert_failures"])
    return total


def test_migration_and_revert_with_writes_on_other_nodes(galera: GaleraCluster, tmp_path: Path) -> None:
    """Clients create and delete ports through servers on nodes 2 and 3 while ``pipam ipam migrate`` runs
    through node 1, to the other backend and back. Every allocation must be held by the backend that was
    active when it committed: after each switch the new backend holds exactly the core's allocations on
    every node (an address committed through the old backend after the fence would be missing from it, a
    release through the old one would be left in it), and the clients' answers agree with every node."""
    name = new_database(galera)
    other = "builtin" if BACKEND == "internal" else "internal"
    servers = start_servers(galera, name, tmp_path)
    writers = [s.base for s in servers[1:]]
    try:
        network_id, _ = make_subnet(servers[0].base)
        before = conflicts(galera)
        fenced: list[tuple[str, float, float]] = []
        with PortLoad(writers, network_id, per_base=3, churn=True, keep=20) as load:
            time.sleep(3)
            for target in (other, BACKEND):
                t0 = time.monotonic()
                done = migrate(galera.url(1, name), target)
                fenced.append((target, t0, time.monotonic()))
                assert done.returncode == 0, done.stdout + done.stderr
                for s in servers:
                    assert httpx.get(f"{s.base}/healthz", timeout=30).json()["active_backend"] == target
                # Checked while the clients go on: the snapshot verify sees must agree at any moment.
                verify_every_node(galera, name, target)
                time.sleep(2)
        after = conflicts(galera) - before
        outcomes = Counter((a.op, a.status, a.error) for a in load.answers)
        allowed = {("create", 201, ""), ("delete", 204, ""), ("delete", 404, "")}
        allowed |= {(op, 503, "IpamMigrationInProgress") for op in ("create", "delete")}
        assert set(outcomes) <= allowed, outcomes
        for target, start, end in fenced:
            met = load.window(start, end)
            assert met[503], f"no request met the fence of the migration to {target}: {met}"
            assert load.window(end + 1, float("inf"))[201], f"no port created after the migration to {target}"
        print(
            f"\nmigration and revert through node 1, clients on nodes 2 and 3: {dict(outcomes)}; transactions "
            f"rerun {dict(retries(servers))}; Galera conflicts {dict(after)}; migrations took "
            f"{', '.join(f'{end - start:.1f} s' for _, start, end in fenced)}"
        )
    finally:
        stop_all(servers)
    check_answers(load)
    check_every_node(galera, name, network_id, load)
