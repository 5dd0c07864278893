"""``pipam ipam``: the active backend, migration between backends, verification, cleanup."""

from __future__ import annotations

import typer

app = typer.Typer(help="IPAM backends: status, migrate, verify, cleanup.", no_args_is_help=True)
