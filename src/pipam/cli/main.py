"""The ``pipam`` command."""

from __future__ import annotations

import typer

from pipam import __version__
from pipam.cli import db, ipam, serve

app = typer.Typer(
    name="pipam",
    help="Pipam: IP address management with pluggable backends.\n\n"
    "Settings come from --config (default ./pipam.toml when present), overridden by PIPAM_* variables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(ipam.app, name="ipam")
app.command("serve")(serve.serve)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pipam {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", "-c", help="TOML settings file (default: ./pipam.toml when present)."
    ),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    ctx.obj = {"config": config}


if __name__ == "__main__":
    app()
