"""Settings: defaults, then a TOML file, then PIPAM_* environment variables (highest)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "pipam.toml"


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
    port: int = 9696
    workers: int = 1
    api_token: str | None = Field(None, description="Admin token: if set, requests must send X-Auth-Token.")
    project_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="Token -> project id. A request with such a token sees only that project's resources.",
    )
    global_physnet_mtu: int = Field(
        1500, ge=68, description="MTU of the physical network: a network's default and largest MTU."
    )
    max_bulk: int = Field(1000, description="Most resources one bulk create may hold.")
    max_page_size: int = Field(1000, description="Most rows one list request returns.")
    max_body_bytes: int = Field(1_048_576, description="Largest request body accepted.")
    retry_after: int = Field(5, description="Seconds clients are told to wait while IPAM is fenced.")
    db_retries: int = Field(10, description="Times a transaction is retried on deadlock or conflict.")
    log_level: str = "INFO"

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
    _toml_path.current = path
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic's ValidationError, TOML decode errors
        raise ConfigError(f"invalid configuration{' in ' + path if path else ''}: {exc}") from exc
    finally:
        _toml_path.current = None
