"""Prefix benchmark: subnets carved from one subnet pool until it is full, per backend.

Reports the time of one network + subnet create (prefix from the pool + backend registration, one
transaction)
per decile of the pool's fill and the ratio last decile / first decile, which should stay near 1:
finding a free prefix is one index lookup, not a scan of the pool's subnets.

    python -m bench.prefixes                     # a /16 pool cut into /28 subnets (4,096), SQLite
    python -m bench.prefixes --pool-prefix 20 --subnet-prefix 28
"""

from __future__ import annotations

import time
from typing import Any

import typer

from bench.common import console, fresh_database, machine, table, write_json
from bench.fill import report
from pipam.testing import local


def carve(u, pool_id: str) -> None:  # type: ignore[no-untyped-def]
    local.create(u, "subnet", {"network_id": local.create(u, "network", {"name": "n"})["id"], "subnetpool_id": pool_id})


def main(
    pool_prefix: int = typer.Option(16, help="Prefix length of the pool's one prefix (10.0.0.0/N)."),
    subnet_prefix: int = typer.Option(28, help="Prefix length of each subnet."),
    backends: str = typer.Option("builtin,internal", help="Comma-separated backends."),
    db: str = typer.Option("sqlite", help="sqlite, postgresql or mariadb."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    out: dict[str, Any] = {
        "machine": machine(),
        "db": db,
        "pool": f"10.0.0.0/{pool_prefix}",
        "subnet_prefix": subnet_prefix,
        "backends": {},
    }
    count = 2 ** (subnet_prefix - pool_prefix)
    for backend in backends.split(","):
        database = fresh_database(db, f"prefixes_{backend}", backend)

        def setup(u):  # type: ignore[no-untyped-def]
            p = local.create(
                u,
                "subnetpool",
                {
                    "name": "p",
                    "prefixes": [f"10.0.0.0/{pool_prefix}"],
                    "min_prefixlen": pool_prefix,
                    "max_prefixlen": 32,
                    "default_prefixlen": subnet_prefix,
                },
            )
            return p["id"]

        pool_id = database.run(setup)
        samples: list[float] = []
        started = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            # A network per subnet: the overlap check reads the network's subnets, and that is not
            # what this measures (pools are shared by many networks).
            database.run(lambda u, pid=pool_id: carve(u, pid))
            samples.append(time.perf_counter() - t0)
        out["backends"][backend] = report(samples, count, started)
        database.dispose()
    rows = [
        [f"{d * 10}-{d * 10 + 10}%", *(r["deciles"][d]["mean_ms"] for r in out["backends"].values())] for d in range(10)
    ]
    table(
        f"ms per subnet create from 10.0.0.0/{pool_prefix} in /{subnet_prefix}s ({db})",
        ["pool fill", *out["backends"]],
        rows,
    )
    for backend, r in out["backends"].items():
        console.print(
            f"{backend}: {count:,} subnets in {r['total_s']:.1f} s; last/first decile = {r['ratio_last_first']:.2f}"
        )
    write_json(json_path, out)


if __name__ == "__main__":
    typer.run(main)
