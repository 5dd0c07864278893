"""Domain objects in the wire format, from their resource's definition."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pipam.service.attributes import Resource
from pipam.service.policy import ADMIN, Caller


def render(resource: Resource, obj: Any, fields: Collection[str] = (), caller: Caller = ADMIN) -> dict[str, Any]:
    """The visible attributes of ``obj`` (only ``fields`` when given), as Neutron shows them to ``caller``."""
    return {
        attr.name: attr.kind.wire(attr.value_of(obj, caller))
        for attr in resource.visible()
        if not fields or attr.name in fields
    }
