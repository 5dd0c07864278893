"""``pipam ipam``: the active backend, migration between backends, verification, cleanup."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.table import Table
from sqlalchemy import select

from pipam.cli.common import console, current_engine, fail, friendly_errors, settings_of
from pipam.db.engine import make_sessionmaker
from pipam.db.models import IpamMigration, IpamState
from pipam.ipam.interface import DriverContext
from pipam.ipam.registry import available_drivers, load_driver
from pipam.migration.core_state import core_counts
from pipam.migration.progress import for_terminal
from pipam.migration.runner import MigrationError, Migrator, Options, Report
from pipam.migration.runner import cleanup as cleanup_backend
from pipam.migration.verify import verify as verify_backend

app = typer.Typer(
    help="IPAM backends: which one is active, migration between them, verification and stale-data cleanup.",
    no_args_is_help=True,
)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
@friendly_errors
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Active backend, fence, last migration, and stale data other backends still hold."""
    settings = settings_of(ctx)
    engine = current_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            state = session.scalar(select(IpamState).where(IpamState.id == 1))
            if state is None:
                fail("the database has no IPAM state; run 'pipam db upgrade' first")
            last = session.scalar(select(IpamMigration).order_by(IpamMigration.started_at.desc()).limit(1))
            stale: dict[str, Any] = {}
            for name in available_drivers():
                if name == state.active_backend:
                    continue
                try:
                    stale[name] = load_driver(name)(DriverContext(session, settings)).counts()
                except Exception as exc:  # a third-party driver that cannot answer must not hide the rest
                    stale[name] = {"error": str(exc)}
    finally:
        engine.dispose()
    data = {
        "active_backend": state.active_backend,
        "configured_driver": settings.ipam_driver,
        "fence": {"migration_id": state.fence_migration_id, "reason": state.fence_reason}
        if state.fence_migration_id
        else None,
        "last_migration": None
        if last is None
        else {
            "id": last.id,
            "source": last.source,
            "target": last.target,
            "status": last.status,
            "phase": last.phase,
            "subnets_done": last.subnets_done,
            "allocations_done": last.allocations_done,
            "started_at": last.started_at,
            "finished_at": last.finished_at,
            "error": last.error,
        },
        "stale_data": stale,
    }
    if as_json:
        _print_json(data)
        return
    console.print(f"active backend:    [bold]{state.active_backend}[/]")
    mismatch = "" if settings.ipam_driver == state.active_backend else "  [red](differs: address changes refused)[/]"
    console.print(f"configured driver: {settings.ipam_driver}{mismatch}")
    console.print(
        f"fence:             {'[yellow]UP[/] ' + str(state.fence_reason) if state.fence_migration_id else 'down'}"
    )
    if last is not None:
        console.print(
            f"last migration:    {last.source} -> {last.target}: {last.status} (phase {last.phase}, "
            f"{last.subnets_done} subnets, {last.allocations_done} allocations copied, started {last.started_at})"
        )
    table = Table("backend", "stale data held", title="inactive backends")
    for name, counts in stale.items():
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in counts.items()) or "none")
    console.print(table)


def _human(report: Report) -> None:
    console.print(
        f"[bold]{report.outcome}[/]: {report.source} -> {report.target}"
        + (f" (migration {report.migration_id}{', resumed' if report.resumed else ''})" if report.migration_id else "")
    )
    if report.counts:
        console.print("core: " + ", ".join(f"{k}={v}" for k, v in report.counts.items()))
    if report.stale_removed and any(report.stale_removed.values()):
        console.print("stale target data replaced: " + ", ".join(f"{k}={v}" for k, v in report.stale_removed.items()))
    for c in report.conflicts[:50]:
        console.print(f"conflict: {c['subnet_id']} {c['ip_address']}: {c['detail']}")
    if report.verification:
        v = report.verification
        console.print(
            f"verification: {'clean' if v['clean'] else str(v['difference_count']) + ' difference(s)'}; "
            f"checksum core {v['checksum']['core']} backend {v['checksum']['backend']}"
        )
        for d in v["differences"][:50]:
            console.print(f"  {d['subnet_id']} {d['kind']}: {d['detail']}")
    if report.message:
        console.print(report.message)


@app.command()
@friendly_errors
def migrate(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="Backend to migrate to (an installed IPAM driver name)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Preflight and plan only; write nothing."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Subnets per transaction and checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    abort: bool = typer.Option(
        False, "--abort", help="Abandon the migration in progress: lift the fence, keep the old backend active."
    ),
    on_conflict: str = typer.Option(
        "fail",
        "--on-conflict",
        help="When a shared target already holds addresses "
        "the core allocates: 'fail' (stop, list them) or 'adopt' (take them over).",
    ),
) -> None:
    """Migrate the database's addresses to another IPAM backend (operator-run, fenced, resumable).

    Steps: preflight (schema, driver, core consistency), fence (address changes get 503 on every
    server), copy in batches with a durable checkpoint, verify against the core tables, switch the
    active backend and lift the fence. If the process dies at any point, run the same command again to
    finish, or add --abort to give up. The source backend's data is left as it was (stale): revert by
    migrating back, remove it with 'pipam ipam cleanup NAME'.
    """
    if on_conflict not in ("fail", "adopt"):
        fail("--on-conflict must be 'fail' or 'adopt'", code=2)
    settings = settings_of(ctx)
    engine = current_engine(settings)
    progress = for_terminal(console, quiet=as_json)
    try:
        migrator = Migrator(engine, progress)
        if abort:
            report = migrator.abort()
        else:
            if not dry_run and not yes:
                if not sys.stdin.isatty():
                    fail("refusing to migrate without confirmation: add --yes (or --dry-run to see the plan)", code=2)
                typer.confirm(f"Fence address changes and migrate to {to!r}?", abort=True)
            report = migrator.run(Options(target=to, batch_size=batch_size, dry_run=dry_run, on_conflict=on_conflict))
    except MigrationError as exc:
        progress.close()
        if as_json:
            _print_json({"outcome": "error", "message": exc.message, **exc.report})
            raise typer.Exit(1) from None
        fail(exc.message)
        return
    finally:
        progress.close()
        engine.dispose()
    if as_json:
        _print_json(report.as_dict())
    else:
        _human(report)
    if report.outcome == "failed":
        raise typer.Exit(1)


@app.command()
@friendly_errors
def verify(
    ctx: typer.Context,
    backend: str | None = typer.Option(None, "--backend", help="Backend to check (default: the active one)."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Subnets read per query batch."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare a backend's state with the core tables; list every difference. Exit 1 when any."""
    settings = settings_of(ctx)
    engine = current_engine(settings)
    try:
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            name = backend or session.scalar(select(IpamState.active_backend).where(IpamState.id == 1))
            if name is None:
                fail("the database has no IPAM state; run 'pipam db upgrade' first")
            driver_cls = load_driver(name)
        # One read transaction: a consistent view while servers keep working.
        with sessions() as session:
            if engine.url.get_backend_name() != "sqlite":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            progress = for_terminal(console, quiet=as_json)
            progress.phase("verify", core_counts(session)["subnets"])
            result = verify_backend(session, driver_cls, batch_size, progress)
            progress.close()
    finally:
        engine.dispose()
    data = {"backend": name, **result.as_dict()}
    if as_json:
        _print_json(data)
    else:
        verdict = "[green]clean[/]" if result.clean else f"[red]{result.difference_count} difference(s)[/]"
        console.print(f"backend {name}: {verdict}")
        console.print("core:    " + ", ".join(f"{k}={v}" for k, v in result.core.items()))
        console.print("backend: " + ", ".join(f"{k}={v}" for k, v in result.backend.items()))
        console.print(f"checksum: core {result.checksums()['core']} backend {result.checksums()['backend']}")
        for d in result.differences:
            console.print(f"  {d.subnet_id} {d.kind}: {d.detail}", highlight=False)
        if result.difference_count > len(result.differences):
            console.print(f"  ... and {result.difference_count - len(result.differences)} more")
    if not result.clean:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def cleanup(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The inactive backend whose stale data to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete the stale data of a backend that is not active (refused for the active one)."""
    settings = settings_of(ctx)
    if not yes:
        if not sys.stdin.isatty():
            fail("refusing to delete without confirmation: add --yes", code=2)
        typer.confirm(f"Delete every record the {name!r} backend holds?", abort=True)
    engine = current_engine(settings)
    try:
        deleted = cleanup_backend(engine, name)
    finally:
        engine.dispose()
    console.print(f"deleted stale data of {name!r}: " + ", ".join(f"{k}={v}" for k, v in deleted.items()))
