"""Causal reads on Galera: what ``wsrep_sync_wait`` costs and what it prevents, measured in one run.

A private 3-node Galera cluster (tests/galera.py; needs root and galera-4), one ``pipam serve`` per
node, and the same two workloads with causal reads on (Pipam's default) and off, alternating:

- churn: 2 client threads per server creating and deleting ports for ``--seconds``; answers per
  second and create latency.
- handover: a subnet created through node 1, at once a port on it through nodes 2 and 3 (``--rounds``
  times, while node 1 is kept busy); how many of those ports fail (404, or a port without address).

    python -m bench.galera [--seconds 15] [--rounds 300] [--repeats 2] [--json FILE]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import typer

from bench.common import console, machine, summary, table, write_json
from pipam.db.engine import make_engine
from pipam.service.bootstrap import upgrade_database
from pipam.testing.galera import GaleraCluster
from pipam.testing.load import PortLoad, make_subnet, port_in_subnet
from pipam.testing.server import Server

# ``pipam`` with causal reads switched off: make_engine looks _configure_galera up at each call.
NO_CAUSAL_READS = [
    sys.executable,
    "-c",
    "import sys, pipam.db.engine as e; configure = e._configure_galera; "
    "e._configure_galera = lambda engine, causal: configure(engine, False); "
    "from pipam.cli.main import app; sys.argv[0] = 'pipam'; app()",
]


def new_database(cluster: GaleraCluster) -> str:
    name = f"pipam_bench_{uuid.uuid4().hex[:8]}"
    with cluster.connect(1) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    engine = make_engine(cluster.url(1, name))
    upgrade_database(engine, "internal")
    engine.dispose()
    return name


def churn(bases: list[str], seconds: float) -> dict[str, Any]:
    network_id, _ = make_subnet(bases[0], "10.128.0.0/12")
    with PortLoad(bases, network_id, per_base=2, churn=True) as load:
        time.sleep(seconds)
    created = [a.took for a in load.created()]
    deleted = sum(1 for a in load.answers if a.op == "delete" and a.status == 204)
    return {
        "answers_per_s": (len(created) + deleted) / seconds,
        "create": summary(created),
        "not_ok": sum(1 for a in load.answers if a.status not in (201, 204)),
    }


def handover(bases: list[str], rounds: int) -> dict[str, Any]:
    failures: list[str] = []
    took: list[float] = []

    def create(client: httpx.Client, network_id: str, subnet_id: str) -> None:
        t0 = time.perf_counter()
        failure = port_in_subnet(client, network_id, subnet_id)
        took.append(time.perf_counter() - t0)
        if failure:
            failures.append("201 without address" if failure.startswith("201") else failure.split()[0])

    background, _ = make_subnet(bases[0], "172.16.0.0/12")
    clients = [httpx.Client(base_url=b, timeout=30) for b in bases[1:]]
    try:
        with PortLoad([bases[0]], background, per_base=2, churn=True):
            for i in range(rounds):
                network_id, subnet_id = make_subnet(bases[0], f"10.{i // 256}.{i % 256}.0/24")
                threads = [threading.Thread(target=create, args=(c, network_id, subnet_id)) for c in clients]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
    finally:
        for c in clients:
            c.close()
    return {"ports": len(took), "failed": len(failures), "kinds": sorted(set(failures)), "create": summary(took)}


def point_reads(cluster: GaleraCluster, name: str, reads: int) -> dict[str, dict[str, float]]:
    """One connection to node 2, a primary-key SELECT, in blocks alternating sync wait 1 and 0: the
    raw price of the causality wait (one round of the group communication) per read."""
    samples: dict[str, list[float]] = {"1": [], "0": []}
    with cluster.connect(2, name) as conn, conn.cursor() as cur:
        causal_before = int(cluster.status(2)["wsrep_causal_reads"])
        for block in range(20):
            mode = "1" if block % 2 == 0 else "0"
            cur.execute(f"SET SESSION wsrep_sync_wait = {mode}")
            for _ in range(reads // 20):
                t0 = time.perf_counter()
                cur.execute("SELECT active_backend FROM ipam_state WHERE id = 1")
                cur.fetchall()
                samples[mode].append(time.perf_counter() - t0)
        # The server's own count, to show that the waits did happen (one per read with sync wait 1).
        causal = int(cluster.status(2)["wsrep_causal_reads"]) - causal_before
    return {mode: {**summary(s), "causal_waits": causal if mode == "1" else 0} for mode, s in samples.items()}


def main(
    seconds: float = typer.Option(15, help="Duration of each churn run."),
    rounds: int = typer.Option(300, help="Subnets handed over per run (two ports each)."),
    repeats: int = typer.Option(2, help="Runs per mode, alternating on/off."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    cluster = GaleraCluster()
    out: dict[str, Any] = {"machine": machine(), "startup_s": cluster.startup_seconds, "runs": []}
    logs = Path(tempfile.mkdtemp(prefix="pipam-bench-galera-"))
    try:
        for _ in range(repeats):
            for causal in (True, False):
                name = new_database(cluster)
                servers: list[Server] = []
                try:
                    for node in range(1, cluster.size + 1):
                        servers.append(
                            Server(
                                cluster.url(node, name),
                                "internal",
                                logs / f"{name}-{node}.log",
                                command=None if causal else NO_CAUSAL_READS,
                            )
                        )
                    bases = [s.base for s in servers]
                    run = {"causal_reads": causal, "churn": churn(bases, seconds), "handover": handover(bases, rounds)}
                finally:
                    for s in servers:
                        s.stop()
                out["runs"].append(run)
                console.print(run)
        out["point_reads"] = point_reads(cluster, name, 4000)
        console.print(out["point_reads"])
    finally:
        cluster.destroy()
    rows = [
        [
            "on" if r["causal_reads"] else "off",
            r["churn"]["answers_per_s"],
            r["churn"]["create"]["p50_ms"],
            r["churn"]["create"]["p99_ms"],
            f"{r['handover']['failed']}/{r['handover']['ports']} {' '.join(r['handover']['kinds'])}",
            r["handover"]["create"]["p50_ms"],
            r["handover"]["create"]["p99_ms"],
        ]
        for r in out["runs"]
    ]
    table(
        f"Galera, 3 nodes, 3 servers (cluster up in {cluster.startup_seconds:.1f} s)",
        ["causal reads", "churn answers/s", "create p50 ms", "create p99 ms", "handover failed", "p50 ms", "p99 ms"],
        rows,
    )
    reads = out["point_reads"]
    table(
        "Primary-key SELECT on node 2, one connection",
        ["wsrep_sync_wait", "mean ms", "p50 ms", "p99 ms", "causal waits (server count)"],
        [
            [mode, r["mean_ms"], r["p50_ms"], r["p99_ms"], r["causal_waits"]]
            for mode, r in sorted(reads.items(), reverse=True)
        ],
    )
    write_json(json_path, out)


if __name__ == "__main__":
    typer.run(main)
