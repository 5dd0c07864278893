"""Pipam against Neutron's reference IPAM driver (``neutrondb_ipam``), in one run, same database kind.

Both fill the same IPv4 subnet with "any address" requests, one transaction per address, in-process.
Pipam's figure also includes its core ``ipallocations`` row, so it does strictly more work per address.
Neutron needs its optional extra, best in a venv of its own:

    python3 -m venv .venv-neutron && .venv-neutron/bin/pip install -e '.[neutron]'
    .venv-neutron/bin/python -m bench.neutron                 # 10.0.0.0/22 to 99 %, SQLite files
    .venv-neutron/bin/python -m bench.neutron --db postgresql --json neutron.json

Neutron's core plugin is replaced by a stand-in that answers the subnet lookup from memory (Neutron
itself reads its subnets table there), which can only make Neutron look faster.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import typer

from bench.common import console, fresh_database, fresh_url, machine, table, write_json
from bench.fill import fill, report


def neutron_fill(url: str, prefix: int, fraction: float) -> dict[str, Any]:
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

    cfg.CONF([], project="neutron")
    manager = db_api.get_context_manager()
    manager.configure(connection=url)
    model_base.BASEV2.metadata.create_all(manager.writer.get_engine())

    class StandInPlugin:
        subnets: dict[str, Any] = {}

        def _get_subnet_object(self, context: Any, subnet_id: str) -> Any:
            return self.subnets[subnet_id]

    plugin = StandInPlugin()
    directory.add_plugin("CORE", plugin)
    ctx = n_context.get_admin_context()
    pool = neutrondb.NeutronDbPool(None, ctx)
    cidr = netaddr.IPNetwork(f"10.0.0.0/{prefix}")
    subnet_id = str(uuid.uuid4())
    first, last = netaddr.IPAddress(cidr.first + 2), netaddr.IPAddress(cidr.last - 1)
    plugin.subnets[subnet_id] = SimpleNamespace(
        cidr=cidr, gateway_ip=netaddr.IPAddress(cidr.first + 1), project_id="bench"
    )
    request = ipam_req.SpecificSubnetRequest(
        "bench",
        subnet_id,
        cidr,
        gateway_ip=netaddr.IPAddress(cidr.first + 1),
        allocation_pools=[netaddr.IPRange(first, last)],
    )
    with db_api.CONTEXT_WRITER.using(ctx):
        pool.allocate_subnet(request)
    size = int(last) - int(first) + 1
    count = int(size * fraction)
    samples, seen = [], set()
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        with db_api.CONTEXT_WRITER.using(ctx):
            ip = pool.get_subnet(subnet_id).allocate(ipam_req.AnyAddressRequest())
        samples.append(time.perf_counter() - t0)
        seen.add(ip)
        if i and i % 200 == 0:
            console.print(f"  neutron {i:,}/{count:,} ({i / (time.perf_counter() - started):,.0f}/s)")
    assert len(seen) == count
    return report(samples, size, started)


def main(
    prefix: int = typer.Option(22, help="IPv4 prefix length of the subnet to fill."),
    fill_to: float = typer.Option(0.99, "--fill", help="Fraction of the pool to allocate."),
    db: str = typer.Option("sqlite", help="sqlite or postgresql (same kind for both)."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    results: dict[str, Any] = {"machine": machine(), "db": db, "prefix": prefix, "fill": fill_to, "runs": {}}
    console.print(f"[bold]neutron[/] (neutrondb_ipam): 10.0.0.0/{prefix} to {fill_to:.0%} on {db}")
    results["runs"]["neutron"] = neutron_fill(fresh_url(db, "neutron"), prefix, fill_to)
    for backend in ("internal", "builtin"):
        console.print(f"[bold]pipam {backend}[/]")
        database = fresh_database(db, f"vs_neutron_{backend}", backend)
        try:
            results["runs"][backend] = fill(database, prefix, fill_to, progress=False)
        finally:
            database.dispose()
    runs = results["runs"]
    rows = []
    for d in range(10):
        n = runs["neutron"]["deciles"][d]["mean_ms"]
        i, b = runs["internal"]["deciles"][d]["mean_ms"], runs["builtin"]["deciles"][d]["mean_ms"]
        rows.append([f"{d * 10}-{d * 10 + 10}%", n, i, b, n / i, n / b])
    table(
        f"mean ms per allocation, 10.0.0.0/{prefix} on {db} (one run)",
        ["fill", "neutron", "pipam internal", "pipam builtin", "neutron/internal", "neutron/builtin"],
        rows,
    )
    last = rows[-1]
    results["speedup_last_decile"] = {"internal": last[4], "builtin": last[5]}
    console.print(
        f"last decile: pipam internal is {last[4]:.0f}x faster per allocation than neutron, "
        f"builtin {last[5]:.0f}x; growth last/first decile: neutron "
        f"{runs['neutron']['ratio_last_first']:.2f}, internal {runs['internal']['ratio_last_first']:.2f}, "
        f"builtin {runs['builtin']['ratio_last_first']:.2f}"
    )
    write_json(json_path, results)


if __name__ == "__main__":
    typer.run(main)
