"""Fill benchmark: allocate "any address" until an IPv4 subnet is N% full, per backend.

Reports the time of one allocation (driver allocate + core row + commit, one transaction each) per
decile of fill and the ratio last decile / first decile: it should stay near 1, whatever the fill.

    python -m bench.fill                      # a /16 to 99 %, both backends, SQLite
    python -m bench.fill --prefix 22 --fill 0.98 --db postgresql --json fill.json
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import typer

from bench.common import console, fresh_database, machine, summary, table, write_json
from pipam.db.models import Subnet
from pipam.ipam.interface import AnyAddressRequest
from pipam.service.allocation import Wanted
from pipam.service.database import Database
from pipam.testing import local


def setup(db: Database, cidr: str) -> tuple[str, str, str, int]:
    def run(u):  # type: ignore[no-untyped-def]
        n = local.create(u, "network", {"name": "bench"})
        s = local.create(u, "subnet", {"network_id": n["id"], "cidr": cidr, "ip_version": 4})
        p = local.create(u, "port", {"network_id": n["id"], "fixed_ips": []})
        size = sum(
            int(ipaddress.ip_address(x["end"])) - int(ipaddress.ip_address(x["start"])) + 1
            for x in s["allocation_pools"]
        )
        return n["id"], s["id"], p["id"], size

    return db.run(run)


def allocate_one(db: Database, network_id: str, subnet: Subnet, port_id: str) -> str:
    """One "any address" through the allocation engine (gate, driver, core row), one transaction."""
    wanted = [Wanted(subnet, AnyAddressRequest())]
    return db.run(lambda u: u.addresses.allocate(port_id, network_id, wanted)[0].ip_address)


def fill(db: Database, prefix: int, fraction: float, progress: bool = True) -> dict[str, Any]:
    network_id, subnet_id, port_id, size = setup(db, f"10.0.0.0/{prefix}")
    with db.session(write=False) as session:
        subnet = session.get(Subnet, subnet_id)
    count = int(size * fraction)
    samples: list[float] = []
    seen: set[str] = set()
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        ip = allocate_one(db, network_id, subnet, port_id)
        samples.append(time.perf_counter() - t0)
        seen.add(ip)
        if progress and i and i % 5000 == 0:
            console.print(f"  {i:,}/{count:,} ({i / (time.perf_counter() - started):,.0f}/s)")
    assert len(seen) == count, "an address was handed out twice"
    return report(samples, size, started)


def report(samples: list[float], pool_size: int, started: float) -> dict[str, Any]:
    """Per-decile timing of a fill, and how the last decile compares with the first."""
    count = len(samples)
    deciles = [summary(samples[d * count // 10 : (d + 1) * count // 10]) for d in range(10)]
    return {
        "pool_size": pool_size,
        "allocations": count,
        "deciles": deciles,
        "ratio_last_first": deciles[-1]["mean_ms"] / deciles[0]["mean_ms"],
        "total_s": time.perf_counter() - started,
    }


def main(
    prefix: int = typer.Option(16, help="IPv4 prefix length of the subnet to fill."),
    fill_to: float = typer.Option(0.99, "--fill", help="Fraction of the pool to allocate."),
    backends: str = typer.Option("builtin,internal", help="Comma-separated backends."),
    db: str = typer.Option("sqlite", help="sqlite, postgresql or mariadb."),
    json_path: str | None = typer.Option(None, "--json", help="Write the figures to this file."),
) -> None:
    results: dict[str, Any] = {"machine": machine(), "db": db, "prefix": prefix, "fill": fill_to, "backends": {}}
    for backend in backends.split(","):
        console.print(f"[bold]{backend}[/]: filling 10.0.0.0/{prefix} to {fill_to:.0%} on {db}")
        database = fresh_database(db, f"fill_{backend}", backend)
        try:
            results["backends"][backend] = fill(database, prefix, fill_to)
        finally:
            database.dispose()
    rows = []
    for d in range(10):
        row: list[Any] = [f"{d * 10}-{d * 10 + 10}%"]
        for r in results["backends"].values():
            row += [r["deciles"][d]["mean_ms"], r["deciles"][d]["p99_ms"]]
        rows.append(row)
    cols = ["fill"] + [f"{b} {m}" for b in results["backends"] for m in ("mean ms", "p99 ms")]
    table(f"time per allocation, 10.0.0.0/{prefix} on {db}", cols, rows)
    for backend, r in results["backends"].items():
        console.print(
            f"{backend}: {r['allocations']:,} allocations in {r['total_s']:.1f} s; "
            f"last/first decile = {r['ratio_last_first']:.2f}"
        )
    write_json(json_path, results)


if __name__ == "__main__":
    typer.run(main)
