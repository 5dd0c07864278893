"""Instructions one request costs inside the server, counted by valgrind's callgrind: a repeatable A/B.

On this shared VM a wall-clock figure of ``bench.api`` moves by 10-20 % from one run to the next, more
than most single changes to the request path are worth. An instruction count of the same code and
inputs moves far less: on a quiet machine by well under 1 %, though once by 10 % (``GET /``, 0.467 M
against 0.517 M) while a test suite ran beside it, so compare counts taken under the same conditions
and count again when one stands out. Each kind of request runs in a process of its own under callgrind, twice: with
``--requests`` and with three times as many after the same warm-up. The difference, over twice
``--requests``, is what one request costs; start-up, imports and set-up cancel out.

The requests are ASGI calls to the app ``pipam serve`` builds (``create_app_from_env``, SQLite, the
internal backend): routing, middleware, the endpoint, the database and rendering are counted; uvicorn,
the kernel's socket work and the client are not. Callgrind runs the threads one at a time, so the
cost of handing a change to the thread pool and back (about 0.2 ms of wall clock on this VM, see
bench/README.md) is not in it either. Compare two checkouts with the same command, or the kinds
with each other; the figures are not times.

    python -m bench.instructions                                  # every kind, about 16 minutes
    python -m bench.instructions --kinds root,get_network --requests 200

Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import typer

from bench.common import console, fresh_database, table, write_json

KINDS = ("root", "get_network", "get_port", "port_create", "list")
# A list page of 1,000 ports costs about 50 times a show: fewer of them keep its runs as long as the others'.
LIST_SHARE = 10
NOT_COUNTED = 2  # exit code: valgrind is missing or a counted run failed
RATIOS = (
    ("get_network", "root", "GET network / GET /"),
    ("port_create", "root", "single port create / GET /"),
    ("list", "get_port", "GET ports?limit=1000 / GET one port"),
)


# --- inside the counted process ----------------------------------------------------------------------


async def _call(app: Any, method: str, path: str, query: bytes = b"", body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would hand it over. Not httpx's ASGITransport: its
    client side would be counted with the server's work."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that stays connected
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _requests(app: Any, kind: str, count: int, list_ports: int) -> None:
    from pipam.testing import local

    db = app.state.database

    def setup(u: Any) -> str:
        network = local.create(u, "network", {"name": "bench"})
        local.create(u, "subnet", {"network_id": network["id"], "cidr": "10.0.0.0/12", "ip_version": 4})
        return str(network["id"])

    network_id = db.run(setup)
    create = json.dumps({"port": {"network_id": network_id}}).encode()
    status, body = await _call(app, "POST", "/v2.0/ports", body=create)
    port_id = json.loads(body)["port"]["id"]
    if kind == "list":
        many = json.dumps({"ports": [{"network_id": network_id}] * 1000}).encode()
        for _ in range(list_ports // 1000):
            await _call(app, "POST", "/v2.0/ports", body=many)
    request = {
        "root": ("GET", "/", b"", b""),
        "get_network": ("GET", f"/v2.0/networks/{network_id}", b"", b""),
        "get_port": ("GET", f"/v2.0/ports/{port_id}", b"", b""),
        "port_create": ("POST", "/v2.0/ports", b"", create),
        "list": ("GET", "/v2.0/ports", b"limit=1000", b""),
    }[kind]
    for _ in range(20 + count):  # the first 20 warm up (compiled statements, lazy imports); both runs make them
        status, body = await _call(app, *request)
        if status not in (200, 201):
            raise SystemExit(f"{kind}: {status} {body[:300]!r}")


def run_requests(kind: str, count: int, list_ports: int) -> None:
    """Build the app as ``pipam serve`` does on a fresh SQLite database, then make ``count`` requests."""
    from pipam.api.app import create_app_from_env

    schema = fresh_database("sqlite", f"instructions_{os.getpid()}", "internal")
    url = schema.engine.url.render_as_string(hide_password=False)
    schema.dispose()
    os.environ.update(PIPAM_DATABASE_URL=url, PIPAM_IPAM_DRIVER="internal", PIPAM_LOG_LEVEL="WARNING")
    app = create_app_from_env()
    try:
        asyncio.run(_requests(app, kind, count, list_ports))
    finally:
        app.state.database.dispose()
        for suffix in ("", "-wal", "-shm"):
            path = url.removeprefix("sqlite:///") + suffix
            if os.path.exists(path):
                os.unlink(path)


# --- the driver ---------------------------------------------------------------------------------------


def counted(kind: str, count: int, list_ports: int) -> int:
    """Instructions of a whole process that makes ``count`` requests of ``kind`` (after the warm-up)."""
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={work}/out",
                sys.executable,
                "-m",
                "bench.instructions",
                "--run-kind",
                kind,
                "--requests",
                str(count),
                "--list-ports",
                str(list_ports),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts, so the same count, every run
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        console.print(f"[red]{kind}: the counted run failed (exit {done.returncode})[/]\n{done.stderr[-2000:]}")
        raise typer.Exit(NOT_COUNTED)
    return int(found.group(1))


def main(
    kinds: str = typer.Option(",".join(KINDS), help=f"Comma-separated, of: {', '.join(KINDS)}."),
    requests: int = typer.Option(40, min=1, help=f"Requests of the shorter run (a list page: 1/{LIST_SHARE})."),
    list_ports: int = typer.Option(2000, min=1000, help="Ports on the server when the list page is counted."),
    json_path: str | None = typer.Option(None, "--json", help="Also write the figures here."),
    run_kind: str | None = typer.Option(None, hidden=True, help="Inside valgrind: make the requests."),
) -> None:
    """Instructions per request inside the server (valgrind's callgrind): a repeatable A/B of the request
    path, and bench.api's ratios counted in instructions. Not times; no HTTP round trip in them."""
    if run_kind is not None:
        run_requests(run_kind, requests, list_ports)
        return
    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown or not chosen:
        raise typer.BadParameter(f"unknown kind(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(KINDS)}")
    if shutil.which("valgrind") is None:
        console.print("[red]valgrind is not installed[/] (apt-get install valgrind)")
        raise typer.Exit(NOT_COUNTED)
    per_request: dict[str, float] = {}
    for kind in chosen:
        n = max(1, requests // LIST_SHARE) if kind == "list" else requests
        console.print(f"{kind}: {n} and {3 * n} requests under callgrind ...")
        per_request[kind] = (counted(kind, 3 * n, list_ports) - counted(kind, n, list_ports)) / (2 * n)
    table(
        "instructions per request inside the server (ASGI app, SQLite, internal backend)",
        ["kind", "instructions"],
        [[kind, f"{per_request[kind] / 1e6:.3f} M"] for kind in chosen],
    )
    ratios = [[what, f"{per_request[a] / per_request[b]:.2f}"] for a, b, what in RATIOS if {a, b} <= per_request.keys()]
    if ratios:
        table(
            "the same ratios as bench.api, in instructions (no HTTP round trip in them)", ["ratio", "measured"], ratios
        )
    write_json(json_path, {"requests": requests, "list_ports": list_ports, "per_request": per_request})


if __name__ == "__main__":
    typer.run(main)
