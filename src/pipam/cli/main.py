"""The ``pipam`` command."""

from __future__ import annotations

import typer

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


@app.callback()
def main(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", "-c", help="TOML settings file (default: ./pipam.toml when present)."
    ),
) -> None:
    ctx.obj = {"config": config}


if __name__ == "__main__":
    app()
