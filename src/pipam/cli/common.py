"""What every CLI command shares: settings from --config, error reporting, the console."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from pipam.config import ConfigError, Settings, load_settings
from pipam.db import schema
from pipam.db.engine import make_engine
from pipam.errors import PipamError

# soft_wrap: long messages stay on one line when piped, so logs and scripts can grep them.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj or {}
    try:
        return load_settings(obj.get("config"))
    except ConfigError as exc:
        fail(str(exc), code=2)
        raise  # unreachable


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
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
            fail(f"database error: {detail}")
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def engine_for(settings: Settings):  # type: ignore[no-untyped-def]
    return make_engine(settings.database_url)


def current_engine(settings: Settings):  # type: ignore[no-untyped-def]
    """An engine on a database whose schema is the newest; otherwise a message saying what to run."""
    engine = make_engine(settings.database_url)
    current, head = schema.current_revision(engine), schema.head_revision(engine)
    if current != head:
        engine.dispose()
        where = "has no Pipam schema" if current is None else f"is at schema revision {current}, not {head}"
        fail(f"the database {where}; run 'pipam db upgrade' first")
    return engine
