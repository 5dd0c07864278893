"""Concurrency benchmark: N worker processes create ports (one address each) through the service.

For 1, 2, 4 and 8 workers on each database: throughput, p50/p99 latency, transaction retries (whole
transactions rerun), lost claims (a free range changed between lookup and compare-and-swap, so the
claim was retried with a new lookup inside the transaction), and duplicates (addresses handed out
twice: must be 0).

    python -m bench.concurrent                              # PostgreSQL and MariaDB, internal backend
    python -m bench.concurrent --dbs sqlite --ports 200 --workers 1,2
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections import Counter
from typing import Any

import typer

from bench.common import console, fresh_database, machine, summary, table, write_json
from pipam.config import load_settings
from pipam.errors import PipamError
from pipam.ipam import free_ranges
from pipam.service.database import Database
from pipam.testing import local


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


def run(kind: str, backend: str, n_workers: int, per_worker: int, n_subnets: int) -> dict[str, Any]:
    db = fresh_database(kind, f"conc_{n_workers}", backend)
    url = db.engine.url.render_as_string(hide_password=False)

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
        ctx.Process(target=worker, args=(url, backend, network_id, subnet_ids, per_worker, i, ready, go, queue))
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
        "ports": len(handed),
        "throughput_per_s": len(handed) / wall,
        **summary(latencies),
        "retries": sum(r[3] for r in results),
        "lost_claims": sum(r[4] for r in results),
        "errors": dict(errors),
        "duplicates": len(handed) - len(set(handed)),
    }


def main(
    dbs: str = typer.Option("postgresql,mariadb", help="Comma-separated: sqlite, postgresql, mariadb."),
    backend: str = typer.Option("internal", help="IPAM backend."),
    workers: str = typer.Option("1,2,4,8", help="Worker counts to run."),
    ports_total: int = typer.Option(1600, "--ports", help="Ports created per run (split across workers)."),
    n_subnets: int = typer.Option(3, "--subnets", help="Subnets the ports spread over."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    out: dict[str, Any] = {"machine": machine(), "backend": backend, "runs": []}
    for kind in dbs.split(","):
        rows = []
        for n in (int(w) for w in workers.split(",")):
            r = run(kind, backend, n, ports_total // n, n_subnets)
            r["db"] = kind
            out["runs"].append(r)
            rows.append(
                [
                    n,
                    r["ports"],
                    r["throughput_per_s"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["retries"],
                    r["lost_claims"],
                    r["duplicates"],
                    ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "-",
                ]
            )
        table(
            f"{backend} on {kind}: {ports_total} ports over {n_subnets} subnets",
            ["workers", "ports", "ports/s", "p50 ms", "p99 ms", "retries", "lost claims", "duplicates", "errors"],
            rows,
        )
    bad = [r for r in out["runs"] if r["duplicates"]]
    if bad:
        console.print(f"[red]DUPLICATES in {len(bad)} run(s)[/]")
    write_json(json_path, out)
    if bad:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
