"""API benchmark: ports created per second through ``pipam serve`` over HTTP, per backend, next to the
raw cost of a single-row insert-and-commit on the same database, measured in the same run.

    python -m bench.api                          # SQLite, 4 client threads, 1 server worker
    python -m bench.api --db postgresql --server-workers 2 --clients 8 --ports 3000
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from bench.common import console, fresh_database, machine, summary, table, write_json
from pipam.db.engine import make_engine
from pipam.testing import local
from pipam.testing.server import Server


def yardstick(url: str, rows: int) -> float:
    """Rows per second of the cheapest durable write: one-row INSERT, COMMIT, one at a time."""
    engine = make_engine(url)
    meta = MetaData()
    t = Table("bench_yardstick", meta, Column("id", Integer, primary_key=True), Column("v", String(64)))
    meta.drop_all(engine)
    meta.create_all(engine)
    start = time.perf_counter()
    with engine.connect() as conn:
        for i in range(rows):
            with conn.begin():
                conn.execute(insert(t).values(v=f"row-{i}"))
    elapsed = time.perf_counter() - start
    meta.drop_all(engine)
    engine.dispose()
    return rows / elapsed


def hammer(base: str, network_id: str, total: int, clients: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    per_client = total // clients

    def client() -> None:
        nonlocal failures
        with httpx.Client(base_url=base, timeout=60) as http:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = http.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    failures += r.status_code != 201

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Only the ports created count: a failed request is no port.
    return (per_client * clients - failures) / (time.perf_counter() - start), latencies, failures


def main(
    db: str = typer.Option("sqlite", help="sqlite, postgresql or mariadb."),
    ports_total: int = typer.Option(2000, "--ports", help="Ports to create per backend."),
    clients: int = typer.Option(4, help="Concurrent HTTP clients."),
    server_workers: int = typer.Option(1, help="pipam serve --workers."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    out: dict[str, Any] = {
        "machine": machine(),
        "db": db,
        "clients": clients,
        "server_workers": server_workers,
        "backends": {},
    }
    rows = []
    for backend in ("builtin", "internal"):
        database = fresh_database(db, f"api_{backend}", backend)
        url = database.engine.url.render_as_string(hide_password=False)

        def setup(u):  # type: ignore[no-untyped-def]
            n = local.create(u, "network", {"name": "bench"})
            local.create(u, "subnet", {"network_id": n["id"], "cidr": "10.0.0.0/16", "ip_version": 4})
            return n["id"]

        network_id = database.run(setup)
        database.dispose()
        raw = yardstick(url, min(ports_total, 2000))
        server = Server(
            url, backend, Path(f"/tmp/pipam-bench-api-{backend}.log"), workers=str(server_workers), log_level="WARNING"
        )
        try:
            with httpx.Client(base_url=server.base) as warm:
                warm.post("/v2.0/ports", json={"port": {"network_id": network_id}})
            rate, latencies, failures = hammer(server.base, network_id, ports_total, clients)
        finally:
            server.stop()
        stats = summary(latencies)
        out["backends"][backend] = {"ports_per_s": rate, "raw_inserts_per_s": raw, "failures": failures, **stats}
        rows.append([backend, rate, raw, rate / raw, stats["p50_ms"], stats["p99_ms"], failures])
    table(
        f"ports through the API ({clients} clients, {server_workers} server worker(s), {db})",
        ["backend", "ports/s", "raw insert+commit/s", "ratio", "p50 ms", "p99 ms", "failures"],
        rows,
    )
    console.print("ratio = API ports per second / raw single-row inserts per second on the same database")
    write_json(json_path, out)


if __name__ == "__main__":
    typer.run(main)
