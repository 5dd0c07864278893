"""Find IPAM drivers by name in the ``pipam.ipam_drivers`` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from pipam.ipam.errors import DriverNotFound
from pipam.ipam.interface import IpamDriver

GROUP = "pipam.ipam_drivers"


def available_drivers() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)})


@cache
def load_driver(name: str) -> type[IpamDriver]:
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        raise DriverNotFound(
            f"IPAM driver {name!r} is not installed; available: {', '.join(available_drivers()) or 'none'}"
        )
    try:
        cls = matches[0].load()
    except Exception as exc:
        raise DriverNotFound(f"IPAM driver {name!r} failed to load: {exc}") from exc
    return cls
