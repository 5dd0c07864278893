"""Find IPAM drivers by name in the ``pipam.ipam_drivers`` entry-point group; their settings and schema."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import ValidationError

from pipam.errors import IpamDriverNotFound
from pipam.ipam.interface import IpamDriver

GROUP = "pipam.ipam_drivers"
log = logging.getLogger("pipam.ipam")


def available_drivers() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)})


@cache
def load_driver(name: str) -> type[IpamDriver]:
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        raise IpamDriverNotFound(
            f"IPAM driver {name!r} is not installed; installed: {', '.join(available_drivers()) or 'none'}"
        )
    try:
        return matches[0].load()  # type: ignore[no-any-return]
    except Exception as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and (extra := _extra_installing(matches[0], exc.name)):
            hint = f"; install it with: pip install '{extra}'"
        raise IpamDriverNotFound(f"IPAM driver {name!r} failed to load: {exc}{hint}") from exc


def _extra_installing(ep: EntryPoint, module: str | None) -> str | None:
    """``dist[extra]`` of the driver's distribution that installs ``module`` (``pipam[nautobot]`` for
    httpx), preferring the extra named like the driver; None when no extra does."""
    dist = ep.dist
    if dist is None or not module:
        return None
    wanted = canonicalize_name(module.split(".")[0])
    extras = dist.metadata.get_all("Provides-Extra") or []
    providing: set[str] = set()
    for text in dist.requires or []:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == wanted and req.marker is not None:
            providing |= {extra for extra in extras if req.marker.evaluate({"extra": extra})}
    if not providing:
        return None
    return f"{dist.name}[{ep.name if ep.name in providing else min(providing)}]"


def driver_settings(cls: type[IpamDriver], tables: dict[str, dict[str, Any]]) -> Any:
    """The driver's own settings from its ``[drivers.<name>]`` table, validated by its settings model."""
    model = getattr(cls, "settings_model", None)
    table = tables.get(cls.name, {})
    if model is None:
        if table:
            raise IpamDriverNotFound(f"IPAM driver {cls.name!r} takes no settings, but [drivers.{cls.name}] sets some")
        return None
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IpamDriverNotFound(f"invalid setting drivers.{cls.name}.{where}: {first['msg']}") from None


def schema_locations() -> list[Path]:
    """The Alembic revision folders of every installed driver that ships tables of its own."""
    found = []
    for name in available_drivers():
        try:
            location = getattr(load_driver(name), "schema", None)
        except IpamDriverNotFound as exc:
            # A driver whose optional dependencies are not installed (``pipam[nautobot]``) is not in use
            # here, so a warning on every start would only be noise; any other failure to load is news.
            level = logging.DEBUG if isinstance(exc.__cause__, ModuleNotFoundError) else logging.WARNING
            log.log(level, "%s; its tables (if any) are not upgraded", exc.message)
            continue
        if location is not None:
            found.append(Path(location))
    return found
