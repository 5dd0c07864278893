"""Where one kind of request spends its time: py-spy on a running ``pipam serve``, as a top-N table.

Starts a server (1 worker) on a fresh database (SQLite, or ``--db postgresql``/``mariadb`` on the
servers ``bench.common`` names), makes one network with a /12 subnet (and ``--ports``
ports for the read kinds and the deletes), warms up, then samples the server with ``py-spy record`` while one
kept-alive client sends the requests in sequence. Samples in which the server was idle (its event
loop polling, thread-pool workers waiting) are dropped; the table gives each function's inclusive and
self share of the busy samples.

    python -m bench.profile_request --kind port_create --requests 800
    python -m bench.profile_request --kind list --ports 10000 --requests 40
    python -m bench.profile_request --db postgresql        # the shared server, a database of its own

Needs ``py-spy`` (``pip install py-spy``) and the right to trace the server (root, or ptrace allowed).
"""

from __future__ import annotations

import collections
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import typer

from bench.common import SERVERS, console, fresh_database, table
from pipam.testing.server import Server

# Leaves of a server waiting for work: uvloop's loop (C, so its Python frame is asyncio's Runner.run),
# thread-pool workers blocked on their queue.
IDLE_LEAVES = ("Runner.run (asyncio/runners.py", "Condition.wait (threading.py", "_wait_for_tstate_lock")
NO_SAMPLES = 2  # exit code: py-spy could not attach to the server
KINDS = ("root", "get_network", "get_port", "port_create", "port_update", "port_delete", "bulk", "list")


# Where a request's own work starts: the outermost middleware (event loop side) and the thread-pool
# worker (database side). Frames above them (the CLI, uvicorn's start-up) are in every sample.
ENTRIES = ("RequestGuard.__call__ (pipam/api/app.py", "WorkerThread.run (anyio/")


def _request_frames(frames: list[str]) -> list[str]:
    start = next((i for i, f in enumerate(frames) if f.startswith(ENTRIES)), 0)
    return frames[start:]


def _idle(frames: list[str]) -> bool:
    leaf = frames[-1] if frames else ""
    return any(mark in leaf for mark in IDLE_LEAVES)


def top(raw: Path, rows: int) -> tuple[int, list[tuple[float, float, str]]]:
    """Inclusive and self shares of each function over the busy samples of a py-spy raw file."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames or _idle(frames):
            continue
        frames = _request_frames(frames)
        count = int(count_text)
        busy += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    ranked = sorted(inclusive, key=lambda n: inclusive[n], reverse=True)[:rows]
    return busy, [(100 * inclusive[n] / busy, 100 * own[n] / busy, n) for n in ranked]


def main(
    kind: str = typer.Option("port_create", help=f"One of: {', '.join(KINDS)}."),
    requests: int = typer.Option(800, help="Requests sampled (after 30 untimed ones)."),
    ports: int = typer.Option(
        1000, help="Ports on the server before sampling (get_port, list; port_delete: at least --requests + 30)."
    ),
    rows: int = typer.Option(25, help="Functions listed."),
    rate: int = typer.Option(500, min=1, help="py-spy samples per second."),
    db: str = typer.Option("sqlite", help=f"Database the server runs on: sqlite, {', '.join(SERVERS)}."),
) -> None:
    if kind not in KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(KINDS)}")
    if kind == "port_delete" and ports < requests + 30:
        raise typer.BadParameter(f"port_delete deletes --requests ports after 30 untimed ones: --ports {requests + 30}")
    if db != "sqlite" and db not in SERVERS:
        raise typer.BadParameter(f"--db must be one of sqlite, {', '.join(SERVERS)}")
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise typer.BadParameter("py-spy is not installed: pip install py-spy")
    work = Path(tempfile.mkdtemp(prefix="pipam-profile-"))
    url = f"sqlite:///{work}/p.db"
    if db != "sqlite":  # a server's database needs its schema first; SQLite's new file gets it on start
        schema = fresh_database(db, "profile", "internal")
        url = schema.engine.url.render_as_string(hide_password=False)
        schema.dispose()
    server = Server(url, "internal", work / "server.log", workers="1")
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            net = client.post("/v2.0/networks", json={"network": {"name": "p"}}).json()["network"]["id"]
            body = {"subnet": {"network_id": net, "cidr": "10.0.0.0/12", "ip_version": 4}}
            client.post("/v2.0/subnets", json=body).raise_for_status()
            made: list[str] = []
            for start in range(0, max(ports, 1), 1000):
                bulk = {"ports": [{"network_id": net}] * min(1000, max(ports, 1) - start)}
                answer = client.post("/v2.0/ports", json=bulk)
                answer.raise_for_status()
                made += [p["id"] for p in answer.json()["ports"]]
            port, doomed = made[0], iter(made)  # port_delete deletes them all; the other kinds use one
            binding = itertools.cycle([{"device_id": "vm-1", "device_owner": "compute:nova"}, {"device_id": ""}])
            send: dict[str, Callable[[], httpx.Response]] = {
                "root": lambda: client.get("/"),
                "get_network": lambda: client.get(f"/v2.0/networks/{net}"),
                "get_port": lambda: client.get(f"/v2.0/ports/{port}"),
                "port_create": lambda: client.post("/v2.0/ports", json={"port": {"network_id": net}}),
                # a VM's binding set and cleared in turn, as Nova does at boot and at delete
                "port_update": lambda: client.put(f"/v2.0/ports/{port}", json={"port": next(binding)}),
                "port_delete": lambda: client.delete(f"/v2.0/ports/{next(doomed)}"),
                "bulk": lambda: client.post("/v2.0/ports", json={"ports": [{"network_id": net}] * 1000}),
                "list": lambda: client.get("/v2.0/ports", params={"limit": 1000}),
            }
            for _ in range(30):
                send[kind]().raise_for_status()
            raw = work / "profile.txt"
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(server.proc.pid), "-r", str(rate), "-f", "raw", "-o", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.5)  # py-spy attaches
            start = time.perf_counter()
            for _ in range(requests):
                send[kind]().raise_for_status()
            took = time.perf_counter() - start
            recorder.send_signal(2)  # py-spy writes its file when interrupted
            try:
                _, spy_errors = recorder.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                _, spy_errors = recorder.communicate()
    finally:
        server.stop()
    if not raw.exists():
        # Typically no right to trace another process (not root, ptrace restricted in a container).
        console.print(f"[red]py-spy could not sample the server:[/] {spy_errors.strip()[-500:]}")
        raise typer.Exit(NO_SAMPLES)
    busy, ranked = top(raw, rows)
    title = f"{kind} on {db}: {requests} requests, {1000 * took / requests:.3f} ms each; {busy} busy samples"
    table(title, ["inclusive %", "self %", "function"], [[f"{i:.1f}", f"{s:.1f}", n] for i, s, n in ranked])
    console.print(f"raw profile: {raw}")


if __name__ == "__main__":
    typer.run(main)
