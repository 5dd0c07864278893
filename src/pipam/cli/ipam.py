"""``pipam ipam``: the active backend, migration between backends, verification, cleanup."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from pipam.cli.common import CONFIG, console, current_engine, fail, friendly_errors, say, settings_of
from pipam.cli.progress import for_terminal
from pipam.db.transactions import Runner, Transaction
from pipam.errors import MigrationError
from pipam.ipam import state
from pipam.ipam.interface import DriverContext
from pipam.ipam.registry import driver_settings, load_driver
from pipam.migration.core_state import core_counts
from pipam.migration.progress import Observer
from pipam.migration.repair import Repairer, RepairReport
from pipam.migration.runner import Migrator, Options, Report
from pipam.migration.runner import cleanup as cleanup_backend
from pipam.migration.status import status as backend_status
from pipam.migration.verify import verify as verify_backend

app = typer.Typer(
    help="IPAM backends: which one is active, migration between them, verification, free-space repair and "
    "stale-data cleanup.",
    no_args_is_help=True,
)


def make_observer(quiet: bool) -> Observer:
    """How a migration reports progress here (tests replace it to watch the named checkpoints)."""
    return for_terminal(console, quiet=quiet)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
@friendly_errors
def status(
    ctx: typer.Context, config: str | None = CONFIG, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Active backend, fence, the migration (running or interrupted), and stale data other backends hold."""
    settings = settings_of(ctx)
    engine = current_engine(settings)
    try:
        data = backend_status(engine, settings)
    finally:
        engine.dispose()
    if as_json:
        _print_json(data)
        return
    say(f"active backend:    {data['active_backend']}")
    if data["migrating_to"]:
        say(f"migrating to:      {data['migrating_to']} ({data['journal_pending']} journalled changes to replay)")
    fence = data["fence"]
    say(f"fence:             {'UP: ' + str(fence['reason']) if fence else 'down'}")
    last = data["last_migration"]
    if last is not None:
        say(
            f"last migration:    {last['source']} -> {last['target']}: {last['status']} (phase {last['phase']}, "
            f"{last['subnets_done']} subnets, {last['allocations_done']} allocations copied, started "
            f"{last['started_at']}, owner {last['owner']}, last heartbeat {last['last_heartbeat']})"
        )
        if last["status"] == "interrupted":
            say(
                f"                   resume with 'pipam ipam migrate --to {last['target']}', or give up with "
                f"'pipam ipam migrate --to {last['target']} --abort'"
            )
    table = Table("backend", "stale data held", title="inactive backends")
    for name, counts in data["stale_data"].items():
        # Text, not str: a cell is data, never Rich markup.
        table.add_row(Text(name), Text(", ".join(f"{k}={v}" for k, v in counts.items()) or "none"))
    console.print(table)


def _human(report: Report) -> None:
    resumed = ", resumed" if report.resumed else ""
    migration = f" (migration {report.migration_id}{resumed})" if report.migration_id else ""
    say(f"{report.outcome}: {report.source} -> {report.target}{migration}")
    if report.counts:
        say("core: " + ", ".join(f"{k}={v}" for k, v in report.counts.items()))
    if report.stale_removed and any(report.stale_removed.values()):
        say("stale target data replaced: " + ", ".join(f"{k}={v}" for k, v in report.stale_removed.items()))
    for c in report.conflicts[:50]:
        say(f"conflict: {c['subnet_id']} {c['ip_address']}: {c['detail']}")
    if report.verification:
        v = report.verification
        verdict = "clean" if v["clean"] else f"{v['difference_count']} difference(s)"
        say(f"verification: {verdict}; checksum core {v['checksum']['core']} backend {v['checksum']['backend']}")
        for d in v["differences"][:50]:
            say(f"  {d['subnet_id']} {d['kind']}: {d['detail']}")
    if report.replayed:
        say(f"changes made during the copy and replayed: {report.replayed}")
    if report.message:
        say(report.message)


@app.command()
@friendly_errors
def migrate(
    ctx: typer.Context,
    config: str | None = CONFIG,
    to: str = typer.Option(..., "--to", help="Backend to migrate to (an installed IPAM driver name)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Preflight, plan and time estimate only; write nothing."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Subnets per transaction and checkpoint."),
    batch_addresses: int = typer.Option(
        2000, "--batch-addresses", min=1, help="A copy transaction also stops at this many addresses."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    abort: bool = typer.Option(
        False, "--abort", help="Give up the interrupted migration to --to: lift the fence, keep the old backend."
    ),
    on_conflict: str = typer.Option(
        "fail",
        "--on-conflict",
        help="When a shared target already holds addresses the core allocates: 'fail' (stop, list them) or "
        "'adopt' (take them over).",
    ),
) -> None:
    """Migrate the database's addresses to another IPAM backend, online.

    Servers keep allocating through the current backend while the core tables are copied into the
    target in checkpointed batches; changes made meanwhile are journalled and replayed into it. The
    whole target is then verified against the core in one snapshot. Only the final step fences
    address changes (503 with Retry-After on every server, well under a second): the last journal
    entries are replayed, what they touched is verified, and the target becomes active. Every server
    follows at that commit, without a restart.

    One migration runs at a time. If the process dies, run the same command again to resume, or add
    --abort to give up. The source backend's data is left as it was (stale): revert by migrating
    back; 'pipam ipam cleanup NAME' removes it.
    """
    if on_conflict not in ("fail", "adopt"):
        fail("--on-conflict must be 'fail' or 'adopt'", code=2)
    settings = settings_of(ctx)
    engine = current_engine(settings)
    observer = make_observer(quiet=as_json)
    try:
        migrator = Migrator(engine, settings, observer)
        if abort:
            report = migrator.abort(to)
        else:
            if not dry_run and not yes:
                if not sys.stdin.isatty():
                    fail("refusing to migrate without confirmation: add --yes (or --dry-run to see the plan)", code=2)
                typer.confirm(f"Migrate the IPAM backend to {to!r}?", abort=True)
            options = Options(to, batch_size, batch_addresses, dry_run, on_conflict)
            report = migrator.run(options)
    except MigrationError as exc:
        observer.close()
        if as_json:
            _print_json({"outcome": "error", "message": exc.message, **exc.report})
            raise typer.Exit(1) from None
        fail(exc.message)
        return
    finally:
        observer.close()
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
    config: str | None = CONFIG,
    backend: str | None = typer.Option(None, "--backend", help="Backend to check (default: the active one)."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Subnets read per query batch."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare a backend's state with the core tables; list every difference. Exit 1 when any."""
    settings = settings_of(ctx)
    engine = current_engine(settings)
    observer = make_observer(quiet=as_json)
    try:
        runner = Runner(engine, settings.db_retries)
        name = backend or runner.run(lambda tx: state.read(tx.session).active, write=False)
        cls = load_driver(name)
        own = driver_settings(cls, settings.drivers)

        def run(tx: Transaction) -> Any:
            observer.phase("verify", core_counts(tx.session)["subnets"])
            return verify_backend(tx.session, cls(DriverContext(tx.session, own, tx.on_rollback)), batch_size, observer)

        # One snapshot: a consistent view while servers keep working.
        result = runner.run(run, write=False, snapshot=True)
    finally:
        observer.close()
        engine.dispose()
    data = {"backend": name, **result.as_dict()}
    if as_json:
        _print_json(data)
    else:
        verdict = "clean" if result.clean else f"{result.difference_count} difference(s)"
        say(f"backend {name}: {verdict}")
        say("core:    " + ", ".join(f"{k}={v}" for k, v in result.core.items()))
        say("backend: " + ", ".join(f"{k}={v}" for k, v in result.backend.items()))
        say(f"checksum: core {result.checksums()['core']} backend {result.checksums()['backend']}")
        say(_free_space_line(result.free_space, len(result.free_space_subnets)))
        for d in result.differences:
            say(f"  {d.subnet_id} {d.kind}: {d.detail}")
        if result.difference_count > len(result.differences):
            say(f"  ... and {result.difference_count - len(result.differences)} more")
    if not result.clean:
        raise typer.Exit(1)


def _free_space_line(free: dict[str, Any], differing: int) -> str:
    if free["check"] == "none":
        return "free space: not checked (the backend declares no free-space check)"
    how = "free ranges" if free["check"] == "ranges" else "a free-address probe"
    verdict = "agrees" if not differing else f"differs in {differing} subnet(s)"
    return f"free space: {verdict} ({how}, {free['subnets_checked']} subnets checked)"


@app.command()
@friendly_errors
def repair(
    ctx: typer.Context,
    config: str | None = CONFIG,
    backend: str = typer.Option(..., "--backend", help="Backend whose free space to rebuild."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would change; write nothing, no fence."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Subnets per query batch and per transaction."),
    take_over_fence: bool = typer.Option(
        False, "--take-over-fence", help="Take over the fence a killed repair left up (never a migration's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Rebuild a backend's free space from its allocation pools and the core's allocations.

    The subnets whose free space differs are found online, as 'pipam ipam verify' finds them. Then the
    fence goes up (address changes answer 503 with Retry-After on every server), their free space is
    rebuilt and checked again, and the fence comes down, whatever happens. Exit 1 when some subnets
    still differ (their pools or allocations differ too: re-migrate).
    """
    settings = settings_of(ctx)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            fail("refusing to repair without confirmation: add --yes (or --dry-run to see what would change)", code=2)
        typer.confirm(f"Rebuild the free space of {backend!r}, pausing address changes meanwhile?", abort=True)
    engine = current_engine(settings)
    observer = make_observer(quiet=as_json)
    try:
        report = Repairer(engine, settings, observer).run(backend, dry_run, batch_size, take_over_fence)
    finally:
        observer.close()
        engine.dispose()
    if as_json:
        _print_json(report.as_dict())
    else:
        _human_repair(report)
    if report.outcome == "incomplete":
        raise typer.Exit(1)


def _human_repair(report: RepairReport) -> None:
    say(f"{report.outcome}: backend {report.backend}")
    if report.found and report.subnets:
        done = "would rebuild" if report.outcome == "dry-run" else "rebuilt"
        say(f"{done} the free space of {len(report.subnets)} subnet(s), which was wrong here:")
        for d in report.found["differences"]:
            say(f"  {d['subnet_id']} {d['kind']}: {d['detail']}")
        shown = len(report.found["differences"])
        total = report.found["free_space"]["differences"]
        if total > shown:
            say(f"  ... and {total - shown} more")
    if report.after and not report.after["clean"]:
        say("still different after the rebuild:")
        for d in report.after["differences"][:50]:
            say(f"  {d['subnet_id']} {d['kind']}: {d['detail']}")
    say(report.message)


@app.command()
@friendly_errors
def cleanup(
    ctx: typer.Context,
    config: str | None = CONFIG,
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
        deleted = cleanup_backend(engine, settings, name)
    finally:
        engine.dispose()
    say(f"deleted stale data of {name!r}: " + ", ".join(f"{k}={v}" for k, v in deleted.items()))
