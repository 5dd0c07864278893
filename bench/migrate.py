"""Migration benchmark: N port addresses over S subnets, a builtin deployment migrated to internal.

Offline: builtin -> internal -> builtin with nobody writing; seconds per phase and the peak
memory of the migrating process (each migration in a process of its own, so that peak RSS is that
size's alone; memory should stay flat as the size grows). On SQLite the copy phase includes a pause
after each batch (``Migrator.pause``, 0.1 s) in which servers waiting for the one write lock get it;
the table shows how much of the copy that was, and the number of batches.

Online: the same dataset built again and migrated builtin -> internal while a client process creates
and deletes ports all along; reports the write pause (the longest gap between two successful creates
while the migration runs), the p99 create latency during the migration, and the pause as a share of
the offline migration's duration, measured in the same run.

    python -m bench.migrate                                 # 100,000 and 1,000,000 addresses, 10,000 subnets
    python -m bench.migrate --sizes 20000 --subnets 200     # a quick run
    python -m bench.migrate --sizes 1000000 --mode online   # online only
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import insert

from bench.common import console, fresh_url, machine, table, write_json
from pipam.config import load_settings
from pipam.db.base import utcnow
from pipam.db.engine import make_engine
from pipam.db.models import IPAllocation, IPAllocationPool, IPAvailabilityRange, Network, Port, Subnet
from pipam.errors import PipamError
from pipam.ipam.addr import to_key
from pipam.ipam.free_ranges import PoolBounds, free_runs
from pipam.migration.runner import Migrator, Options
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.local import LocalClient

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
    """An observer that records when each phase started and ended (monotonic clock, shared by processes)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = [("preflight", time.monotonic())]
        self.copy_batches = 0

    def phase(self, name: str, total: int) -> None:
        self.marks.append((name, time.monotonic()))

    def advance(self, n: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def checkpoint(self, name: str) -> None:
        # The runner marks the end of each copy batch, after which it breathes (``Migrator.pause``).
        self.copy_batches += name.startswith("after-batch-")

    def close(self) -> None:
        self.marks.append(("end", time.monotonic()))

    def durations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for a, b in zip(self.marks, self.marks[1:], strict=False):
            out[a[0]] = out.get(a[0], 0.0) + b[1] - a[1]
        return out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@internal.command("run-one")
def run_one(url: str, target: str, batch_size: int = 500) -> None:
    """(internal) One migration in this process; prints JSON with phase times and memory."""
    engine = make_engine(url)
    idle_mb = rss_mb()  # after the imports: what the migration itself adds is measured apart
    timer = PhaseTimer()
    migrator = Migrator(engine, load_settings(database_url=url), timer)
    report = migrator.run(Options(target=target, batch_size=batch_size))
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
                "copy_batches": timer.copy_batches,
                # What of the copy was the pause after each batch, in which waiting servers write.
                "copy_breaths_s": timer.copy_batches * migrator.pause,
                "started": timer.marks[0][1],
                "ended": timer.marks[-1][1],
                "marks": timer.marks,
                "fenced_seconds": report.fenced_seconds,
                "replayed": report.replayed,
                "peak_rss_mb": peak_mb,
                "idle_rss_mb": idle_mb,
            }
        )
    )


@internal.command("prepare-load")
def prepare_load(url: str) -> None:
    """(internal) A network and a /16 for the online client; prints the network id."""
    db = Database(load_settings(database_url=url))
    client = LocalClient(db)
    network_id = client.create("network", name="online-load")["id"]
    client.create("subnet", network_id=network_id, cidr="10.250.0.0/16", ip_version=4)
    db.dispose()
    print(network_id)


@internal.command("load-one")
def load_one(url: str, network_id: str, stop_file: str, out_file: str, live: int = 200) -> None:
    """(internal) Create ports (deleting the oldest beyond ``live``) until ``stop_file`` exists."""
    db = Database(load_settings(database_url=url))
    client = LocalClient(db)
    events: list[tuple[float, float, str]] = []  # (start, end, "ok" or the error type)
    held: list[str] = []
    stop = Path(stop_file)
    while not stop.exists():
        t0 = time.monotonic()
        try:
            held.append(client.create("port", network_id=network_id)["id"])
            outcome = "ok"
        except PipamError as exc:
            outcome = exc.type
        events.append((t0, time.monotonic(), outcome))
        if outcome != "ok":
            time.sleep(0.01)
        while len(held) > live:
            with contextlib.suppress(PipamError):  # fenced: the port stays, deleted later
                client.delete("port", held[0])
                held.pop(0)
    db.dispose()
    Path(out_file).write_text(json.dumps(events))


def write_pause(events: list[list[Any]], start: float, end: float) -> dict[str, float]:
    """The longest gap between two successful creates that touches [start, end], and p99 latency there."""
    done = sorted(e[1] for e in events if e[2] == "ok")
    gaps = [(b - a, a) for a, b in itertools.pairwise(done) if b >= start and a <= end]
    during = sorted(e[1] - e[0] for e in events if e[2] == "ok" and start <= e[0] <= end)
    refused = sum(1 for e in events if e[2] != "ok" and start <= e[0] <= end)
    longest, at = max(gaps, default=(0.0, start))
    return {
        "longest_gap_s": longest,
        "longest_gap_at_s": at - start,  # from the migration's start: compare with its phase marks
        "p99_ms": during[min(len(during) - 1, int(len(during) * 0.99))] * 1000 if during else 0.0,
        "creates": len(during),
        "refused": refused,
    }


def online(url: str, batch_size: int, tmp: Path) -> dict[str, Any]:
    network_id = child("prepare-load", url).strip()
    stop, out = tmp / "stop", tmp / "load.json"
    stop.unlink(missing_ok=True)
    load = subprocess.Popen([sys.executable, "-m", "bench.migrate", "load-one", url, network_id, str(stop), str(out)])
    try:
        time.sleep(3)  # the client is up and creating before the migration starts
        r = json.loads(child("run-one", url, "internal", "--batch-size", str(batch_size)))
        time.sleep(2)
    finally:
        stop.touch()
        load.wait(timeout=120)
    r.update(write_pause(json.loads(out.read_text()), r["started"], r["ended"]))
    return r


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
    mode: str = typer.Option("both", help="offline, online or both."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    out: dict[str, Any] = {"machine": machine(), "db": db, "subnets": n_subnets, "runs": [], "online": []}
    rows, online_rows = [], []
    for size in (int(s) for s in sizes.split(",")):
        offline_total = None
        if mode in ("offline", "both"):
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
                total = sum(ph.values())
                offline_total = offline_total or total
                rows.append(
                    [
                        f"{size:,}",
                        f"-> {target}",
                        ph.get("preflight", 0.0),
                        ph.get("copy", 0.0),
                        f"{r['copy_breaths_s']:.1f} ({r['copy_batches']})",
                        *(ph.get(p, 0.0) for p in ("catch-up", "verify")),
                        total,
                        r["peak_rss_mb"],
                        r["peak_rss_mb"] - r["idle_rss_mb"],
                    ]
                )
        if mode in ("online", "both"):
            url = fresh_url(db, f"migrate_online_{size}")
            child("build-one", url, str(size), str(n_subnets))
            with tempfile.TemporaryDirectory() as tmp:
                r = online(url, batch_size, Path(tmp))
            if r["outcome"] != "completed" or not r["clean"]:
                raise SystemExit(f"online migration did not complete clean: {r}")
            r.update(size=size, offline_total_s=offline_total)
            out["online"].append(r)
            total = sum(r["phases"].values())
            share = r["longest_gap_s"] / offline_total if offline_total else None
            online_rows.append(
                [
                    f"{size:,}",
                    total,
                    r["creates"],
                    r["refused"],
                    r["replayed"],
                    r["fenced_seconds"],
                    r["longest_gap_s"],
                    r["p99_ms"],
                    "-" if share is None else f"{share:.2%}",
                ]
            )
    if rows:
        table(
            f"offline migration of N addresses over {n_subnets:,} subnets ({db}), seconds per phase",
            [
                "addresses",
                "migration",
                "preflight",
                "copy",
                "of it, breaths (batches)",
                "catch-up",
                "verify",
                "total s",
                "peak RSS MB",
                "growth MB",
            ],
            rows,
        )
    if online_rows:
        table(
            f"online migration builtin -> internal while a client creates and deletes ports ({db})",
            [
                "addresses",
                "migration s",
                "creates during",
                "503s",
                "replayed",
                "fenced s",
                "write pause s",
                "p99 create ms",
                "pause / offline",
            ],
            online_rows,
        )
    peaks: dict[int, list[float]] = {}
    growth: dict[int, list[float]] = {}
    for r in out["runs"]:
        peaks.setdefault(r["size"], []).append(r["peak_rss_mb"])
        growth.setdefault(r["size"], []).append(r["peak_rss_mb"] - r["idle_rss_mb"])
    sizes_run = sorted(peaks)
    if len(sizes_run) > 1:
        ratio = max(peaks[sizes_run[-1]]) / max(peaks[sizes_run[0]])
        out["peak_ratio_largest_smallest"] = ratio
        # The peak includes the process's idle RSS (interpreter and imports); the growth over it is what
        # the migration itself holds.
        big, small = max(growth[sizes_run[-1]]), max(growth[sizes_run[0]])
        out["growth_mb_largest_smallest"] = [big, small]
        console.print(
            f"peak RSS at {sizes_run[-1]:,} / at {sizes_run[0]:,} = {ratio:.2f}; growth over idle RSS "
            f"{big:.1f} MB / {small:.1f} MB"
        )
    write_json(json_path, out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("run-one", "build-one", "prepare-load", "load-one"):
        internal()
    else:
        typer.run(main)
