"""The Nautobot driver next to Nautobot's own allocation, on a private Nautobot (tests/nautobot_server.py).

1. Per-call cost, one client: a port created through Pipam with the Nautobot driver (Pipam's transaction,
   the driver's prefix lookup and its create of the ip-address) next to one ``POST .../available-ips/``
   on a prefix of the same size, alternating, in the same run.
2. Failure rate under ``--clients`` concurrent clients on one prefix each: through Pipam (threads sharing
   a PostgreSQL database, each request its own transaction) and Nautobot's ``available-ips`` directly.
3. Migration rate: ``--migrate`` port addresses (in /24 subnets) migrated internal -> nautobot by
   ``pipam ipam migrate`` (bulk creates), then back to internal; addresses per second each way.

    python -m bench.nautobot                                   # 200 calls, 8 clients x 25, 10,000 addresses
    python -m bench.nautobot --calls 20 --per-client 5 --migrate 500   # a quick run
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from bench.common import SERVERS, console, machine, summary, table, write_json
from pipam.config import load_settings
from pipam.db.engine import normalise_url
from pipam.errors import PipamError
from pipam.ipam.drivers.nautobot import client as nb
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing import local
from pipam.testing.databases import drop, recreate

app = typer.Typer(add_completion=False)
# Pipam's database for the per-call and concurrent figures, on the shared PostgreSQL server.
PG_DATABASE = "pipam_bench_nautobot"


def _pipam(url: str, backend: str) -> Database:
    db = Database(load_settings(database_url=url, ipam_driver=backend))
    upgrade_database(db.engine, backend)
    return db


def per_call(db: Database, client: nb.NautobotClient, ids: dict[str, str], calls: int) -> dict[str, Any]:
    network = db.run(lambda u: local.create(u, "network", {"name": "per-call"}))["id"]
    db.run(lambda u: local.create(u, "subnet", {"network_id": network, "cidr": "10.60.0.0/22", "ip_version": 4}))
    direct = client.create_prefix("10.61.0.0/22", ids["namespace"], ids["status"])
    pipam_s, direct_s = [], []
    for _ in range(calls):  # alternating, so that both see the same load and the same fill
        t = time.perf_counter()
        db.run(lambda u: local.create(u, "port", {"network_id": network}))
        pipam_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.allocate_next(direct["id"], ids["status"])
        direct_s.append(time.perf_counter() - t)
    p, d = summary(pipam_s), summary(direct_s)
    return {"calls": calls, "pipam": p, "available_ips": d, "ratio_mean": p["mean_ms"] / d["mean_ms"]}


def concurrent(
    db: Database, client: nb.NautobotClient, ids: dict[str, str], clients: int, per_client: int
) -> dict[str, Any]:
    network = db.run(lambda u: local.create(u, "network", {"name": "concurrent"}))["id"]
    db.run(lambda u: local.create(u, "subnet", {"network_id": network, "cidr": "10.62.0.0/22", "ip_version": 4}))
    direct = client.create_prefix("10.63.0.0/22", ids["namespace"], ids["status"])
    results: dict[str, dict[str, Any]] = {}

    def run(name: str, call: Any) -> None:
        outcomes: Counter[str] = Counter()
        got: list[str] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(per_client):
                try:
                    ip = call()
                    outcome = "ok"
                except (PipamError, nb.NautobotError) as exc:
                    ip, outcome = None, type(exc).__name__
                with lock:
                    outcomes[outcome] += 1
                    if ip:
                        got.append(ip)

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        took = time.perf_counter() - t
        total = clients * per_client
        results[name] = {
            "calls": total,
            "failed": total - outcomes["ok"],
            "failure_rate": (total - outcomes["ok"]) / total,
            "duplicates": len(got) - len(set(got)),
            "outcomes": dict(outcomes),
            "per_second": outcomes["ok"] / took,
        }

    run(
        "pipam",
        lambda: db.run(lambda u: local.create(u, "port", {"network_id": network}))["fixed_ips"][0]["ip_address"],
    )
    run("available_ips", lambda: client.allocate_next(direct["id"], ids["status"])[0]["host"])
    return results


def bulk_load(db: Database, addresses: int) -> None:
    """``addresses`` ports in /24 subnets of the internal backend, created through the service in bulk requests."""
    network = db.run(lambda u: local.create(u, "network", {"name": "migrate"}))["id"]
    per_subnet = 250
    for i in range((addresses + per_subnet - 1) // per_subnet):
        count = min(per_subnet, addresses - i * per_subnet)
        sub = db.run(
            lambda u, i=i: local.create(
                u, "subnet", {"network_id": network, "cidr": f"10.{70 + i // 256}.{i % 256}.0/24", "ip_version": 4}
            )
        )

        def ports(u, sub=sub, count=count):  # type: ignore[no-untyped-def]
            for _ in range(count):
                local.create(u, "port", {"network_id": network, "fixed_ips": [{"subnet_id": sub["id"]}]})

        db.run(ports)


def raw_bulk(client: nb.NautobotClient, ids: dict[str, str], count: int) -> float:
    """Addresses per second Nautobot itself creates by bulk requests of 250 (no Pipam at all)."""
    prefix = client.create_prefix("10.64.0.0/16", ids["namespace"], ids["status"])
    hosts = [f"10.64.{i // 250}.{i % 250 + 1}/16" for i in range(count)]
    t = time.perf_counter()
    for start in range(0, count, 250):
        client.bulk_create_ips(
            [{"address": h, "namespace": ids["namespace"], "status": ids["status"]} for h in hosts[start : start + 250]]
        )
    took = time.perf_counter() - t
    assert prefix
    return count / took


def migrate(url: str, target: str) -> dict[str, Any]:
    env = {**os.environ, "PIPAM_DATABASE_URL": url}
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipam.cli.main", "ipam", "migrate", "--to", target, "--yes", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"migrate --to {target} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"seconds": took, "report": json.loads(done.stdout)}


@app.command()
def main(
    calls: int = typer.Option(200, help="Sequential allocations, each way, for the per-call cost."),
    clients: int = typer.Option(8, help="Concurrent clients."),
    per_client: int = typer.Option(25, help="Allocations per concurrent client."),
    addresses: int = typer.Option(10_000, "--migrate", help="Port addresses migrated internal -> nautobot."),
    json_path: str = typer.Option(None, "--json", help="Write the figures as JSON to this file."),
) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.nautobot_server import NautobotServer

    server = NautobotServer(say=console.print)
    pg_admin = normalise_url(SERVERS["postgresql"])
    scratch = Path(tempfile.mkdtemp(prefix="pipam-bench-nb-"))
    made_pg = False
    try:
        with nb.NautobotClient(server.url, server.token, timeout=60) as client:
            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            client.create_namespace(namespace)
            ids = {"namespace": client.namespace(namespace)["id"], "status": client.status_id()}
            for key, value in {"url": server.url, "token": server.token, "namespace": namespace}.items():
                os.environ[f"PIPAM_DRIVERS__NAUTOBOT__{key.upper()}"] = value
            os.environ["PIPAM_DRIVERS__NAUTOBOT__TIMEOUT"] = "60"
            pg = recreate(pg_admin, PG_DATABASE)
            made_pg = True
            db = _pipam(pg, "nautobot")
            one = per_call(db, client, ids, calls)
            table(
                f"per call, one client, {calls} each (alternating)",
                ["path", "mean ms", "p50 ms", "p99 ms"],
                [
                    ["Pipam + driver (port create)", *one["pipam"].values()],
                    ["available-ips", *one["available_ips"].values()],
                ],
            )
            many = concurrent(db, client, ids, clients, per_client)
            table(
                f"{clients} concurrent clients x {per_client} allocations, one prefix each",
                ["path", "failed", "failure rate", "duplicates", "ok per s", "outcomes"],
                [
                    [k, v["failed"], v["failure_rate"], v["duplicates"], v["per_second"], v["outcomes"]]
                    for k, v in many.items()
                ],
            )
            db.dispose()

            moved: dict[str, Any] = {}
            if addresses:  # --migrate 0: the allocation figures only
                # A namespace of its own: the prefixes above belong to another Pipam database.
                moved_ns = f"bench-{uuid.uuid4().hex[:8]}"
                client.create_namespace(moved_ns)
                os.environ["PIPAM_DRIVERS__NAUTOBOT__NAMESPACE"] = moved_ns
                path = scratch / "pipam.db"
                url = f"sqlite:///{path}"
                src = _pipam(url, "internal")
                t = time.perf_counter()
                bulk_load(src, addresses)
                load_s = time.perf_counter() - t
                src.dispose()
                raw = raw_bulk(client, ids, min(addresses, 1000))
                there = migrate(url, "nautobot")
                back = migrate(url, "internal")
                moved = {
                    "addresses": addresses,
                    "load_seconds": load_s,
                    "to_nautobot_seconds": there["seconds"],
                    "to_nautobot_per_second": addresses / there["seconds"],
                    "back_seconds": back["seconds"],
                    "back_per_second": addresses / back["seconds"],
                    "nautobot_bulk_create_per_second": raw,
                    "to_nautobot_vs_raw_bulk": addresses / there["seconds"] / raw,
                }
                table(
                    f"migration of {addresses:,} port addresses",
                    ["direction", "seconds", "addresses per s"],
                    [
                        ["internal -> nautobot", there["seconds"], moved["to_nautobot_per_second"]],
                        ["nautobot -> internal", back["seconds"], moved["back_per_second"]],
                        ["(Nautobot alone: bulk creates of 250)", "", raw],
                    ],
                )
    finally:
        server.destroy()
        if made_pg:  # the shared server keeps nothing of this run
            drop(pg_admin, PG_DATABASE)
        shutil.rmtree(scratch, ignore_errors=True)
    write_json(json_path, {"machine": machine(), "per_call": one, "concurrent": many, "migration": moved})
    if any(v["duplicates"] for k, v in many.items() if k == "pipam") or many["pipam"]["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    app()
