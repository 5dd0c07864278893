"""Settings: defaults, then a TOML file, then PIPAM_* environment variables (highest)."""

from __future__ import annotations

import contextlib
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_CONFIG_FILE = "pipam.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The URL schemes (SQLAlchemy driver names) of the databases and drivers Pipam ships with.
SUPPORTED_DRIVERS = frozenset(
    {
        "sqlite",
        "sqlite+pysqlite",
        "postgres",
        "postgresql",
        "postgresql+psycopg",
        "mysql",
        "mariadb",
        "mysql+pymysql",
        "mariadb+pymysql",
    }
)
# PIPAM_ names that are not settings but are known: the configuration file, and names reserved for
# the test suite and the benchmarks (PIPAM_<driver>_* belong to installed drivers).
OTHER_VARIABLES = ("PIPAM_CONFIG",)
RESERVED_PREFIXES = ("PIPAM_TEST_", "PIPAM_BENCH_")
SECRETS = ("database_url", "api_token", "project_tokens")


class _TomlPath:
    """The TOML file chosen for the settings being built (pydantic sources are class-level)."""

    current: str | None = None


_toml_path = _TomlPath()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIPAM_", env_nested_delimiter="__", extra="forbid")

    database_url: str = Field("sqlite:///pipam.db", description="SQLAlchemy URL of the database.")
    ipam_driver: str = Field(
        "internal", description="IPAM backend a new database starts with ('pipam db upgrade' records it)."
    )
    pin_ipam_driver: bool = Field(
        False,
        description="Allocate only through ipam_driver: refuse address changes while the database records "
        "another backend (servers otherwise follow the database's active backend, without a restart).",
    )
    drivers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Settings of each IPAM driver, a table [drivers.<name>] per driver."
    )
    host: str = "127.0.0.1"
    port: int = Field(9696, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    api_token: str | None = Field(None, description="Admin token: if set, requests must send X-Auth-Token.")
    project_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="Token -> project id. A request with such a token sees only that project's resources.",
    )
    global_physnet_mtu: int = Field(
        1500, ge=68, description="MTU of the physical network: a network's default and largest MTU."
    )
    max_bulk: int = Field(1000, ge=1, description="Most resources one bulk create may hold.")
    max_page_size: int = Field(1000, ge=1, description="Most rows one list request returns.")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest request body accepted.")
    retry_after: int = Field(5, ge=0, description="Seconds clients are told to wait while IPAM is fenced.")
    db_retries: int = Field(10, ge=0, description="Times a transaction is retried on deadlock or conflict.")
    db_connections: int = Field(
        10,
        ge=1,
        description="Database connections each server worker keeps open, and the most requests it runs "
        "against the database at once; further requests wait for one of them.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _supported_url(cls, value: str) -> str:
        """Refuse at once a database Pipam does not run on, or a driver it does not ship, rather than
        with an import error when the first connection is made."""
        try:
            driver = make_url(value).drivername
        except ArgumentError:
            raise ValueError(f"{value!r} is not a database URL (e.g. sqlite:///pipam.db)") from None
        if driver not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"unsupported database {driver!r}: use sqlite:///FILE, postgresql://... (psycopg 3) "
                "or mysql://... (PyMySQL)"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _toml_path.current:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_toml_path.current))
        return tuple(sources)


class ConfigError(Exception):
    """The configuration file is missing or invalid."""


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Read settings; ``config_file`` None means ./pipam.toml when it exists."""
    path = config_file or os.environ.get("PIPAM_CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"configuration file {path!r} does not exist")
    given = {k: v for k, v in overrides.items() if v is not None}
    _toml_path.current = path
    try:
        return Settings(**given)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid configuration file {path}: TOML syntax error: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, path, given)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc}") from None
    finally:
        _toml_path.current = None


def describe_error(exc: ValidationError, path: str | None, given: dict[str, Any]) -> str:
    """The first mistake as one line: which setting, where it was set, what is wrong with it."""
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"])
    top = str(first["loc"][0]) if first["loc"] else ""
    variable = f"PIPAM_{top.upper()}"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(top, Settings.model_fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown setting {name!r} in {path}{_line_of(path, top)}{hint}"
    if top in given:
        where = f"{top} (given on the command line)"
    elif variable in os.environ:
        # A secret (a URL's password, a token) is not repeated on a terminal or in a log.
        shown = variable if top in SECRETS else f"{variable}={os.environ[variable]!r}"
        where = shown
    elif path:
        where = f"{name} in {path}{_line_of(path, top)}"
    else:
        where = name
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"invalid setting {where}: {message}"


def _line_of(path: str | None, key: str) -> str:
    """ ", line N" where the file sets ``key`` at its top level (the first such line)."""
    if not path or not key:
        return ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            if line.strip().startswith("["):
                break  # tables follow: the settings of drivers, not top-level keys
            if line.split("=", 1)[0].strip().strip("\"'") == key:
                return f", line {number}"
    return ""


def unknown_variables(environ: dict[str, str] | None = None, drivers: list[str] | None = None) -> list[str]:
    """A warning per PIPAM_ environment variable that is no setting (a misspelt one is silently ignored
    otherwise, and the default it meant to override stays in force)."""
    environ = dict(os.environ) if environ is None else environ
    if drivers is None:
        from pipam.ipam.registry import available_drivers  # the registry imports the driver interface

        drivers = available_drivers()
    known = {f"PIPAM_{name.upper()}" for name in Settings.model_fields}
    owned = (*RESERVED_PREFIXES, *(f"PIPAM_{d.upper()}_" for d in drivers), "PIPAM_DRIVERS__")
    warnings = []
    for name in sorted(environ):
        if not name.startswith("PIPAM_") or name in known or name in OTHER_VARIABLES or name.startswith(owned):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"unknown environment variable {name} ignored{hint}")
    return warnings
