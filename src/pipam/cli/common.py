"""What every CLI command shares: settings from --config, one-line errors, the console."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from pipam.config import ConfigError, Settings, load_settings, unknown_variables
from pipam.db.engine import make_engine
from pipam.errors import PipamError
from pipam.service.bootstrap import require_current

# soft_wrap: long messages stay on one line when piped, so logs and scripts can grep them.
# Data (addresses, names, values from the database) is printed with markup and highlighting off:
# "[x]" would vanish as a markup tag and "fd00:a:b::" would turn into an emoji.
console = Console(soft_wrap=True, highlight=False, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)
F = TypeVar("F", bound=Callable[..., Any])


def say(text: str) -> None:
    console.print(text, markup=False)


# Every command takes --config too, so that it may follow the subcommand (pipam db upgrade --config F).
CONFIG = typer.Option(None, "--config", "-c", help="TOML settings file (default: ./pipam.toml when present).")


def config_file(ctx: typer.Context) -> str | None:
    """--config after the subcommand, else before it."""
    return ctx.params.get("config") or (ctx.find_root().obj or {}).get("config")


def settings_of(ctx: typer.Context) -> Settings:
    for warning in unknown_variables():
        err_console.print(f"warning: {warning}", markup=False)
    try:
        return load_settings(config_file(ctx))
    except ConfigError as exc:
        fail(str(exc), code=2)
        raise  # unreachable


def fail(message: str, code: int = 1) -> None:
    err_console.print("[bold red]error:[/] ", end="")
    err_console.print(message, markup=False)
    raise typer.Exit(code)


def friendly_errors(fn: F) -> F:
    """Known failures become one clear line on stderr and a non-zero exit, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except PipamError as exc:
            fail(exc.message)
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            # Only what the database itself answered is a database error; any other SQLAlchemy error
            # is a bug in Pipam and is not blamed on the database.
            fail(f"database error: {detail}" if isinstance(exc, DBAPIError) else f"internal error: {detail}")
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def current_engine(settings: Settings) -> Engine:
    """An engine on a database whose schema is the newest; otherwise a message saying what to run."""
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
