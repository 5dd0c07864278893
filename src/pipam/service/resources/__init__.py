"""The API's resources, one module each: its definition (attribute map) and its operations.

A module here that defines ``DEFINITION`` is served by the API with no further registration: adding
a resource is its module, its table in ``pipam.db.models`` and an Alembic revision.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, cast

from pipam.service.attributes import Request, Resource


class ResourceModule(Protocol):
    DEFINITION: Resource
    get: Callable[..., Any]
    create: Callable[..., Any]
    update: Callable[..., Any]
    delete: Callable[..., None]


def _is_resource(module: ModuleType) -> bool:
    return isinstance(getattr(module, "DEFINITION", None), Resource)


def discover() -> list[ResourceModule]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if _is_resource(module):
            found.append(cast(ResourceModule, module))
    return found


__all__ = ["Request", "ResourceModule", "discover"]
