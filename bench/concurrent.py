"""Concurrency benchmark: N worker processes create ports (one address each) through the service.

For 1, 2, 4 and 8 workers on each database: throughput, p50/p99 latency, transaction retries (whole
transactions rerun), lost claims (a free range changed between lookup and compare-and-swap, so the
claim was retried with a new lookup inside the transaction), and duplicates (addresses handed out
twice: must be 0).

Several nodes of one database (a Galera cluster, one URL per node): the workers are spread over the
URLs round-robin, and each worker count runs twice in one go, all workers on the first node and spread
over every node, so that the two are measured side by side.

    python -m bench.concurrent                              # PostgreSQL and MariaDB, internal backend
    python -m bench.concurrent --dbs sqlite --ports 200 --workers 1,2
    python -m bench.concurrent --galera                     # a private 3-node Galera cluster (root, galera-4)
    python -m bench.concurrent --url mysql://root@node1:3306/ --url mysql://root@node2:3306/ ...
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import uuid
from collections import Counter
from typing import Any

import typer
from sqlalchemy import make_url

from bench.common import console, fresh_url, machine, summary, table, write_json
from pipam.config import load_settings
from pipam.db.engine import normalise_url
from pipam.errors import PipamError
from pipam.ipam import free_ranges
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing import local
from pipam.testing.databases import drop, recreate


def worker(url, backend, network_id, subnet_ids, count, seed, ready, go, queue) -> None:  # type: ignore[no-untyped-def]
    db = Database(load_settings(database_url=url, ipam_driver=backend))
    db.run(lambda u: u.addresses.driver)  # connect and import everything before the clock starts
    rnd = random.Random(seed)
    ready.release()
    go.wait()
    latencies, ips, errors = [], [], Counter()
    for _ in range(count):
        sid = rnd.choice(subnet_ids)
        t0 = time.perf_counter()
        try:
            p = db.run(
                lambda u, sid=sid: local.create(
                    u, "port", {"network_id": network_id, "fixed_ips": [{"subnet_id": sid}]}
                )
            )
            ips.append((sid, p["fixed_ips"][0]["ip_address"]))
        except PipamError as exc:
            errors[exc.type] += 1
        latencies.append(time.perf_counter() - t0)
    queue.put((latencies, ips, dict(errors), db.retries, free_ranges.claims.lost))
    db.dispose()


def fresh_on_nodes(urls: list[str], name: str) -> list[str]:
    """A new database ``name`` created through the first node; its URL on every node."""
    first = recreate(urls[0], name)
    return [
        first,
        *(make_url(normalise_url(u)).set(database=name).render_as_string(hide_password=False) for u in urls[1:]),
    ]


def run(urls: list[str], backend: str, n_workers: int, per_worker: int, n_subnets: int) -> dict[str, Any]:
    """``urls``: one database, as reached through one or more nodes; worker i uses ``urls[i % len]``."""
    db = Database(load_settings(database_url=urls[0], ipam_driver=backend))
    upgrade_database(db.engine, backend)

    def setup(u):  # type: ignore[no-untyped-def]
        n = local.create(u, "network", {"name": "bench"})
        ids = [
            local.create(u, "subnet", {"network_id": n["id"], "cidr": f"10.{i}.0.0/20", "ip_version": 4})["id"]
            for i in range(n_subnets)
        ]
        return n["id"], ids

    network_id, subnet_ids = db.run(setup)
    db.dispose()
    ctx = mp.get_context("spawn")
    queue, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [
        ctx.Process(
            target=worker,
            args=(urls[i % len(urls)], backend, network_id, subnet_ids, per_worker, i, ready, go, queue),
        )
        for i in range(n_workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    start = time.perf_counter()
    go.set()
    results = [queue.get() for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r[0]]
    handed = [x for r in results for x in r[1]]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r[2])
    return {
        "workers": n_workers,
        "nodes": min(len(urls), n_workers),
        "ports": len(handed),
        "throughput_per_s": len(handed) / wall,
        **summary(latencies),
        "retries": sum(r[3] for r in results),
        "lost_claims": sum(r[4] for r in results),
        "errors": dict(errors),
        "duplicates": len(handed) - len(set(handed)),
    }


def row(r: dict[str, Any]) -> list[Any]:
    return [
        r["workers"],
        r["nodes"],
        r["ports"],
        r["throughput_per_s"],
        r["p50_ms"],
        r["p99_ms"],
        r["retries"],
        r["lost_claims"],
        r["duplicates"],
        ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "-",
    ]


COLUMNS = ["workers", "nodes", "ports", "ports/s", "p50 ms", "p99 ms", "retries", "lost claims", "duplicates", "errors"]


def main(
    dbs: str = typer.Option("postgresql,mariadb", help="Comma-separated: sqlite, postgresql, mariadb."),
    urls: list[str] = typer.Option(
        [], "--url", help="A node of one database server (repeat for each node); replaces --dbs."
    ),
    galera: bool = typer.Option(False, help="Start a private 3-node Galera cluster and use its nodes."),
    backend: str = typer.Option("internal", help="IPAM backend."),
    workers: str = typer.Option("1,2,4,8", help="Worker counts to run."),
    ports_total: int = typer.Option(1600, "--ports", help="Ports created per run (split across workers)."),
    n_subnets: int = typer.Option(3, "--subnets", help="Subnets the ports spread over."),
    repeats: int = typer.Option(1, help="Runs per worker count (and per node count on several nodes)."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    out: dict[str, Any] = {"machine": machine(), "backend": backend, "runs": []}
    counts = [int(w) for w in workers.split(",")]
    cluster = None
    if galera:
        from pipam.testing.galera import GaleraCluster

        cluster = GaleraCluster()
        out["galera_startup_s"] = cluster.startup_seconds
        urls = [cluster.url(node) for node in range(1, cluster.size + 1)]
    try:
        if urls:
            # One node against all of them, alternating, each on a fresh database (a name of its own: the
            # database server may be shared).
            tag = uuid.uuid4().hex[:6]
            rows = []
            for n in counts:
                for rep in range(repeats):
                    for nodes in sorted({1, len(urls)}):
                        name = f"pipam_bench_conc_{tag}_{n}_{nodes}n_{rep}"
                        try:
                            r = run(fresh_on_nodes(urls[:nodes], name), backend, n, ports_total // n, n_subnets)
                        finally:
                            drop(urls[0], name)
                        r["db"] = f"{nodes} of {len(urls)} nodes"
                        out["runs"].append(r)
                        rows.append(row(r))
            where = "a private 3-node Galera cluster" if galera else f"{len(urls)} nodes"
            table(f"{backend} on {where}: {ports_total} ports over {n_subnets} subnets", COLUMNS, rows)
        else:
            for kind in dbs.split(","):
                rows = []
                for n in counts:
                    r = run([fresh_url(kind, f"conc_{n}")], backend, n, ports_total // n, n_subnets)
                    r["db"] = kind
                    out["runs"].append(r)
                    rows.append(row(r))
                table(f"{backend} on {kind}: {ports_total} ports over {n_subnets} subnets", COLUMNS, rows)
    finally:
        if cluster is not None:
            cluster.destroy()
    bad = [r for r in out["runs"] if r["duplicates"]]
    if bad:
        console.print(f"[red]DUPLICATES in {len(bad)} run(s)[/]")
    write_json(json_path, out)
    if bad:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
