"""Pipam against Neutron's reference IPAM driver (``neutrondb_ipam``), in one run, same database kind.

Both fill the same IPv4 subnet with "any address" requests, one transaction per address, in-process.
Pipam's figure also includes its core ``ipallocations`` row, so it does strictly more work per address.
Neutron needs its optional extra, best in a venv of its own:

    python3 -m venv .venv-neutron && .venv-neutron/bin/pip install -e '.[neutron]'
    .venv-neutron/bin/python -m bench.neutron                 # 10.0.0.0/22 to 99 %, SQLite files
    .venv-neutron/bin/python -m bench.neutron --db postgresql --json neutron.json

On SQLite both sides run at the same durability, set on every connection each side opens: WAL with
``synchronous=NORMAL`` (Pipam's own setting: a commit does not wait for fsync) and WAL with
``synchronous=FULL`` (every commit is fsynced); ``--durability`` picks one or both, and the settings
each side's connections really had are read back and printed. Neutron (oslo.db) keeps its own
connection handling (its pool class is printed too). Each side first fills a small subnet of its own
(``--warmup`` addresses), untimed, so that imports, caches and the first connections are not measured.

Neutron's core plugin is replaced by a stand-in that answers the subnet lookup from memory (Neutron
itself reads its subnets table there), which can only make Neutron look faster.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import typer
from sqlalchemy import Engine, event

from bench.common import console, fresh_database, fresh_url, machine, table, write_json
from bench.fill import allocate_one, fill, report, setup
from pipam.db.models import Subnet
from pipam.service.database import Database

DURABILITY = {"normal": "NORMAL", "full": "FULL"}  # SQLite's synchronous setting, WAL on both sides


def same_durability(engine: Engine, level: dict[str, str]) -> None:
    """Every connection ``engine`` opens from now on runs WAL at ``level["synchronous"]`` (SQLite only).

    ``level`` is read at each connect, so one engine can be moved to another level by changing it and
    disposing the engine's pooled connections."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={level['synchronous']}")
        cur.close()

    engine.dispose()  # connections opened before the listener get the setting when reopened


def settings_of(engine: Engine) -> dict[str, Any]:
    """What a connection of ``engine`` really runs with."""
    found: dict[str, Any] = {"pool": type(engine.pool).__name__}
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            found["journal_mode"] = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            found["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync)
    return found


class NeutronSide:
    """Neutron's ``neutrondb_ipam`` on one database, set up once per process (oslo.db's engine facade
    cannot be configured twice); each fill uses a subnet of its own."""

    def __init__(self, url: str, level: dict[str, str]) -> None:
        try:
            import netaddr
            import neutron.db.migration.models.head  # noqa: F401  (registers every Neutron table)
            from neutron.ipam import requests as ipam_req
            from neutron.ipam.drivers.neutrondb_ipam import driver as neutrondb
            from neutron_lib import context as n_context
            from neutron_lib.db import api as db_api
            from neutron_lib.db import model_base
            from neutron_lib.plugins import directory
            from oslo_config import cfg
        except ImportError as exc:
            raise SystemExit(f"neutron is not installed ({exc}); pip install -e '.[neutron]' in its own venv") from exc
        self.netaddr, self.ipam_req, self.db_api = netaddr, ipam_req, db_api
        cfg.CONF([], project="neutron")
        manager = db_api.get_context_manager()
        manager.configure(connection=url)
        self.engine = manager.writer.get_engine()
        same_durability(self.engine, level)
        model_base.BASEV2.metadata.create_all(self.engine)

        class StandInPlugin:
            subnets: dict[str, Any] = {}

            def _get_subnet_object(self, context: Any, subnet_id: str) -> Any:
                return self.subnets[subnet_id]

        self.plugin = StandInPlugin()
        directory.add_plugin("CORE", self.plugin)
        self.ctx = n_context.get_admin_context()
        self.pool = neutrondb.NeutronDbPool(None, self.ctx)
        self.subnets = 0

    def warm_up(self, count: int) -> None:
        """``count`` allocations in a /24 of their own, untimed."""
        self.fill(24, count / 253, progress=False, timed=False)

    def fill(self, prefix: int, fraction: float, progress: bool = True, timed: bool = True) -> dict[str, Any]:
        netaddr, ipam_req, db_api = self.netaddr, self.ipam_req, self.db_api
        cidr = netaddr.IPNetwork(f"10.{self.subnets}.0.0/{prefix}")
        self.subnets += 1
        subnet_id = str(uuid.uuid4())
        first, last = netaddr.IPAddress(cidr.first + 2), netaddr.IPAddress(cidr.last - 1)
        gateway = netaddr.IPAddress(cidr.first + 1)
        self.plugin.subnets[subnet_id] = SimpleNamespace(cidr=cidr, gateway_ip=gateway, project_id="bench")
        request = ipam_req.SpecificSubnetRequest(
            "bench", subnet_id, cidr, gateway_ip=gateway, allocation_pools=[netaddr.IPRange(first, last)]
        )
        with db_api.CONTEXT_WRITER.using(self.ctx):
            self.pool.allocate_subnet(request)
        size = int(last) - int(first) + 1
        count = int(size * fraction)
        samples, seen = [], set()
        started = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            with db_api.CONTEXT_WRITER.using(self.ctx):
                ip = self.pool.get_subnet(subnet_id).allocate(ipam_req.AnyAddressRequest())
            samples.append(time.perf_counter() - t0)
            seen.add(ip)
            if progress and i and i % 200 == 0:
                console.print(f"  neutron {i:,}/{count:,} ({i / (time.perf_counter() - started):,.0f}/s)")
        assert len(seen) == count
        return report(samples, size, started) if timed else {}


def warm_up(database: Database, count: int) -> None:
    """``count`` allocations in a /24 on a network of its own, untimed."""
    network_id, subnet_id, port_id, _ = setup(database, "10.255.0.0/24")
    with database.session(write=False) as session:
        subnet = session.get(Subnet, subnet_id)
    for _ in range(count):
        allocate_one(database, network_id, subnet, port_id)


def pipam_fill(db: str, backend: str, level: dict[str, str], prefix: int, fraction: float, warmup: int) -> Any:
    database = fresh_database(db, f"vs_neutron_{backend}", backend)
    try:
        same_durability(database.engine, level)
        warm_up(database, warmup)
        result = fill(database, prefix, fraction, progress=False)
        return result, settings_of(database.engine)
    finally:
        database.dispose()


def main(
    prefix: int = typer.Option(22, help="IPv4 prefix length of the subnet to fill."),
    fill_to: float = typer.Option(0.99, "--fill", help="Fraction of the pool to allocate."),
    db: str = typer.Option("sqlite", help="sqlite or postgresql (same kind for both)."),
    durability: str = typer.Option(
        "normal,full", help="SQLite only: normal (WAL, synchronous=NORMAL) and/or full (WAL, synchronous=FULL)."
    ),
    warmup: int = typer.Option(
        50, min=0, max=250, help="Addresses each side allocates untimed first, in a /24 of its own."
    ),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    levels = [d.strip() for d in durability.split(",")] if db == "sqlite" else ["server"]
    unknown = set(levels) - set(DURABILITY) - {"server"}
    if unknown:
        raise typer.BadParameter(f"unknown durability {', '.join(sorted(unknown))}; use normal and/or full")
    results: dict[str, Any] = {
        "machine": machine(),
        "db": db,
        "prefix": prefix,
        "fill": fill_to,
        "warmup": warmup,
        "by_durability": {},
    }
    level = {"synchronous": DURABILITY.get(levels[0], "NORMAL")}
    neutron = NeutronSide(fresh_url(db, "neutron"), level)
    neutron.warm_up(warmup)
    for name in levels:
        level["synchronous"] = DURABILITY.get(name, "NORMAL")
        neutron.engine.dispose()  # its next connections get this level
        console.print(f"[bold]durability {name}[/]: 10.0.0.0/{prefix} to {fill_to:.0%} on {db}")
        console.print("[bold]neutron[/] (neutrondb_ipam)")
        runs: dict[str, Any] = {"neutron": neutron.fill(prefix, fill_to)}
        settings: dict[str, Any] = {"neutron": settings_of(neutron.engine)}
        for backend in ("internal", "builtin"):
            console.print(f"[bold]pipam {backend}[/]")
            runs[backend], settings[backend] = pipam_fill(db, backend, level, prefix, fill_to, warmup)
        results["by_durability"][name] = {"runs": runs, "settings": settings}
        show(name, db, prefix, runs, settings, results["by_durability"][name])
    write_json(json_path, results)


def show(name: str, db: str, prefix: int, runs: dict[str, Any], settings: dict[str, Any], out: dict[str, Any]) -> None:
    for side, found in settings.items():
        console.print(f"  {side}: " + ", ".join(f"{k}={v}" for k, v in found.items()))
    rows = []
    for d in range(10):
        n = runs["neutron"]["deciles"][d]["mean_ms"]
        i, b = runs["internal"]["deciles"][d]["mean_ms"], runs["builtin"]["deciles"][d]["mean_ms"]
        rows.append([f"{d * 10}-{d * 10 + 10}%", n, i, b, n / i, n / b])
    table(
        f"mean ms per allocation, 10.0.0.0/{prefix} on {db}, durability {name} (one run)",
        ["fill", "neutron", "pipam internal", "pipam builtin", "neutron/internal", "neutron/builtin"],
        rows,
    )
    last = rows[-1]
    out["speedup_last_decile"] = {"internal": last[4], "builtin": last[5]}
    console.print(
        f"durability {name}, last decile: pipam internal is {last[4]:.1f}x faster per allocation than neutron, "
        f"builtin {last[5]:.1f}x; growth last/first decile: neutron "
        f"{runs['neutron']['ratio_last_first']:.2f}, internal {runs['internal']['ratio_last_first']:.2f}, "
        f"builtin {runs['builtin']['ratio_last_first']:.2f}"
    )


if __name__ == "__main__":
    typer.run(main)
