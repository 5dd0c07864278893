"""Migration benchmark: N port addresses over S subnets, migrated builtin -> internal -> builtin.

Reports rows per second per phase (preflight, copy, verify) and the peak memory of the migrating
process. Each size runs in processes of its own, so that peak RSS is that size's alone; memory should
stay flat as the size grows (the migration streams subnets in batches).

    python -m bench.migrate                              # 100,000 and 1,000,000 addresses, 10,000 subnets
    python -m bench.migrate --sizes 20000 --subnets 200  # a quick run
"""

from __future__ import annotations

import ipaddress
import json
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

import typer
from sqlalchemy import insert

from bench.common import console, fresh_url, machine, table, write_json
from pipam.config import load_settings
from pipam.db.base import utcnow
from pipam.db.engine import make_engine
from pipam.db.models import IPAllocation, IPAllocationPool, IPAvailabilityRange, Network, Port, Subnet
from pipam.ipam.addr import to_key
from pipam.ipam.free_ranges import PoolBounds, free_runs
from pipam.migration.runner import Migrator, Options
from pipam.service.bootstrap import upgrade_database

internal = typer.Typer(add_completion=False, help="Child processes of the benchmark.")
CHUNK = 20_000


def build(url: str, addresses: int, n_subnets: int) -> None:
    """Bulk-load the core tables and the builtin backend's free ranges, as a builtin deployment has them."""
    engine = make_engine(url)
    upgrade_database(engine, "builtin")
    per = addresses // n_subnets
    now = utcnow()
    std = {
        "project_id": "bench",
        "name": "",
        "description": "",
        "tags": [],
        "revision_number": 0,
        "created_at": now,
        "updated_at": now,
    }
    buf: dict[Any, list[dict[str, Any]]] = {
        m: [] for m in (Network, Subnet, IPAllocationPool, Port, IPAllocation, IPAvailabilityRange)
    }

    def flush() -> None:
        # Every buffer, parents first: a port must not arrive before its network.
        with engine.begin() as conn:
            for model in (Network, Subnet, IPAllocationPool, Port, IPAllocation, IPAvailabilityRange):
                if buf[model]:
                    conn.execute(insert(model), buf[model])
                    buf[model] = []

    network_id = ""
    for i in range(n_subnets):
        if i % 100 == 0:
            network_id = str(uuid.uuid4())
            buf[Network].append(
                {"id": network_id, **std, "admin_state_up": True, "shared": False, "status": "ACTIVE", "mtu": 1500}
            )
        net = ipaddress.ip_network(f"10.{i // 64}.{(i % 64) * 4}.0/22")
        sid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        first, last = int(net.network_address) + 2, int(net.broadcast_address) - 1
        buf[Subnet].append(
            {
                "id": sid,
                **std,
                "network_id": network_id,
                "ip_version": 4,
                "cidr": str(net),
                "gateway_ip": str(net.network_address + 1),
                "enable_dhcp": True,
                "dns_nameservers": [],
                "host_routes": [],
            }
        )
        buf[IPAllocationPool].append(
            {
                "id": pid,
                "subnet_id": sid,
                "first_ip": str(ipaddress.IPv4Address(first)),
                "last_ip": str(ipaddress.IPv4Address(last)),
                "first_key": to_key(first),
                "last_key": to_key(last),
            }
        )
        values = list(range(first, first + per * 3, 3))  # spread out: many free ranges to rebuild
        for v in values:
            port_id = str(uuid.uuid4())
            ip = str(ipaddress.IPv4Address(v))
            buf[Port].append(
                {
                    "id": port_id,
                    **std,
                    "network_id": network_id,
                    "mac_address": f"fa:16:3e:{(v >> 16) & 255:02x}:{(v >> 8) & 255:02x}:{v & 255:02x}",
                    "admin_state_up": True,
                    "status": "DOWN",
                    "device_id": "",
                    "device_owner": "",
                }
            )
            buf[IPAllocation].append(
                {"ip_address": ip, "subnet_id": sid, "ip_key": to_key(v), "port_id": port_id, "network_id": network_id}
            )
        for p, a, b in free_runs([PoolBounds(pid, first, last)], values):
            buf[IPAvailabilityRange].append(
                {"subnet_id": sid, "pool_id": p, "first_key": to_key(a), "last_key": to_key(b)}
            )
        if len(buf[IPAllocation]) >= CHUNK:
            flush()
    flush()
    engine.dispose()


class PhaseTimer:
    """A Progress that records when each phase started and ended."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = [("preflight", time.perf_counter())]

    def phase(self, name: str, total: int) -> None:
        self.marks.append((name, time.perf_counter()))

    def advance(self, n: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def checkpoint(self, name: str) -> None:
        return None

    def close(self) -> None:
        self.marks.append(("end", time.perf_counter()))

    def durations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for a, b in zip(self.marks, self.marks[1:], strict=False):
            out[a[0]] = out.get(a[0], 0.0) + b[1] - a[1]
        return out


@internal.command("run-one")
def run_one(url: str, target: str, batch_size: int = 500) -> None:
    """(internal) One migration in this process; prints JSON with phase times and peak RSS."""
    engine = make_engine(url)
    timer = PhaseTimer()
    report = Migrator(engine, load_settings(database_url=url), timer).run(Options(target=target, batch_size=batch_size))
    timer.close()
    engine.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "outcome": report.outcome,
                "clean": (report.verification or {}).get("clean"),
                "allocations": report.counts.get("allocations"),
                "phases": timer.durations(),
                "peak_rss_mb": peak_mb,
            }
        )
    )


@internal.command("build-one")
def build_one(url: str, addresses: int, subnets: int) -> None:
    """(internal) Build the dataset in this process."""
    build(url, addresses, subnets)


def child(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bench.migrate", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench.migrate {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main(
    sizes: str = typer.Option("100000,1000000", help="Address counts to run, comma-separated."),
    n_subnets: int = typer.Option(10_000, "--subnets", help="Subnets the addresses spread over."),
    db: str = typer.Option("sqlite", help="sqlite, postgresql or mariadb."),
    batch_size: int = typer.Option(500, help="--batch-size of the migration."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    out: dict[str, Any] = {"machine": machine(), "db": db, "subnets": n_subnets, "runs": []}
    rows = []
    for size in (int(s) for s in sizes.split(",")):
        url = fresh_url(db, f"migrate_{size}")
        t0 = time.perf_counter()
        child("build-one", url, str(size), str(n_subnets))
        console.print(f"built {size:,} addresses over {n_subnets:,} subnets in {time.perf_counter() - t0:.0f} s")
        for target in ("internal", "builtin"):
            r = json.loads(child("run-one", url, target, "--batch-size", str(batch_size)))
            if r["outcome"] != "completed" or not r["clean"]:
                raise SystemExit(f"migration to {target} did not complete clean: {r}")
            r.update(size=size, target=target)
            out["runs"].append(r)
            ph = r["phases"]
            rows.append(
                [
                    f"{size:,}",
                    f"-> {target}",
                    *(size / ph[p] for p in ("preflight", "copy", "verify")),
                    sum(ph.values()),
                    r["peak_rss_mb"],
                ]
            )
    table(
        f"migration of N addresses over {n_subnets:,} subnets ({db})",
        ["addresses", "migration", "preflight rows/s", "copy rows/s", "verify rows/s", "total s", "peak RSS MB"],
        rows,
    )
    peaks = {}
    for r in out["runs"]:
        peaks.setdefault(r["size"], []).append(r["peak_rss_mb"])
    sizes_run = sorted(peaks)
    if len(sizes_run) > 1:
        ratio = max(peaks[sizes_run[-1]]) / max(peaks[sizes_run[0]])
        out["peak_ratio_largest_smallest"] = ratio
        console.print(f"peak RSS at {sizes_run[-1]:,} / at {sizes_run[0]:,} = {ratio:.2f}")
    write_json(json_path, out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("run-one", "build-one"):
        internal()
    else:
        typer.run(main)
