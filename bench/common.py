"""Shared by the benchmarks: fresh databases, timing summaries, tables and JSON output."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipam.config import load_settings
from pipam.db.engine import normalise_url
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.databases import recreate

# Wide enough for the tables when the output is a file or a pipe, not a terminal.
console = Console(width=None if sys.stdout.isatty() else 200)

SERVERS = {
    "postgresql": os.environ.get("PIPAM_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("PIPAM_BENCH_MARIADB_URL", "mysql://root@127.0.0.1:3306/test"),
}


def fresh_url(kind: str, name: str) -> str:
    """An empty database of ``kind`` (sqlite, postgresql, mariadb) named ``name``."""
    if kind == "sqlite":
        path = Path(tempfile.gettempdir()) / f"pipam-bench-{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    return recreate(normalise_url(SERVERS[kind]), f"pipam_bench_{name}")


def fresh_database(kind: str, name: str, backend: str) -> Database:
    url = fresh_url(kind, name)
    db = Database(load_settings(database_url=url, ipam_driver=backend))
    upgrade_database(db.engine, backend)
    return db


def summary(samples: list[float]) -> dict[str, float]:
    """Milliseconds: mean, p50, p99."""
    ordered = sorted(samples)
    if not ordered:
        return {"mean_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    return {
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(*columns, title=title)
    for row in rows:
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row])
    console.print(t)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2))
        console.print(f"wrote {path}")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": os.uname().sysname + " " + os.uname().machine,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }


@contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    yield box
    box.append(time.perf_counter() - start)
