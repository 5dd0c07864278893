"""Helpers every resource module uses: callers, lookups, standard attributes, updates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from pipam.db.base import utcnow
from pipam.db.models import StandardAttrs
from pipam.errors import BadRequest, InvalidInput, NotFound, PipamError

M = TypeVar("M", bound=StandardAttrs)

MAX_NAME = 255
MAX_TAG = 60


@dataclass(frozen=True)
class Caller:
    """Who is asking. ``restricted`` callers see only their project's resources (and shared ones)."""

    project_id: str = ""
    restricted: bool = False

    def owner_for(self, body: Mapping[str, Any]) -> str:
        project = body.get("project_id") or body.get("tenant_id") or self.project_id or ""
        if not isinstance(project, str) or len(project) > MAX_NAME:
            raise InvalidInput("Invalid input: project_id must be a string of at most 255 characters")
        if self.restricted and project != self.project_id:
            raise PipamError(
                f"Policy doesn't allow creating a resource in project {project!r}.",
                type="PolicyNotAuthorized",
                status=403,
            )
        return project

    def can_see(self, obj: StandardAttrs, shared: bool = False) -> bool:
        return not self.restricted or obj.project_id == self.project_id or shared


ADMIN = Caller()


def not_found(kind: str, id_: str) -> NotFound:
    return NotFound(f"{kind} {id_} could not be found.", type=f"{kind}NotFound")


def get_or_404(
    session: Session,
    model: type[M],
    id_: object,
    kind: str,
    caller: Caller = ADMIN,
    *,
    for_update: bool = False,
    shared_attr: str | None = None,
) -> M:
    if not isinstance(id_, str) or len(id_) > 36:
        raise not_found(kind, str(id_))
    obj = session.get(model, id_, with_for_update=for_update or None)
    if obj is None or not caller.can_see(obj, bool(shared_attr and getattr(obj, shared_attr))):
        raise not_found(kind, id_)
    return obj


def require_owner(obj: StandardAttrs, caller: Caller, kind: str) -> None:
    """Shared resources are readable by all; only their project may change them."""
    if caller.restricted and obj.project_id != caller.project_id:
        raise not_found(kind, obj.id)


def check_unknown(body: Mapping[str, Any], allowed: Iterable[str], kind: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'", type="HTTPBadRequest")
    del kind


def text(body: Mapping[str, Any], key: str, default: str = "", limit: int = MAX_NAME) -> str:
    value = body.get(key, default)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not a valid string.")
    if len(value) > limit:
        raise InvalidInput(f"Invalid input for {key}. Reason: '{value[:32]}...' exceeds maximum length of {limit}.")
    return value


def boolean(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not a valid boolean value.")


def integer(
    body: Mapping[str, Any], key: str, default: int | None, low: int | None = None, high: int | None = None
) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not an integer.")
    if isinstance(value, str):  # the openstack CLI sends numbers as strings
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not an integer.") from None
    if not isinstance(value, int):
        raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not an integer.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not in range {low} through {high}.")
    return value


def tags(body: Mapping[str, Any], default: list[str] | None = None) -> list[str]:
    value = body.get("tags", default if default is not None else [])
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG for t in value):
        raise InvalidInput(
            f"Invalid input for tags. Reason: tags must be a list of strings of 1 to {MAX_TAG} characters."
        )
    return sorted(set(value))


def set_standard(obj: StandardAttrs, body: Mapping[str, Any], caller: Caller) -> None:
    obj.project_id = caller.owner_for(body)
    obj.name = text(body, "name")
    obj.description = text(body, "description")
    obj.tags = tags(body)
    now = utcnow()
    obj.created_at = now
    obj.updated_at = now
    obj.revision_number = 0


def update_standard(obj: StandardAttrs, body: Mapping[str, Any]) -> None:
    if "name" in body:
        obj.name = text(body, "name")
    if "description" in body:
        obj.description = text(body, "description")
    if "tags" in body:
        obj.tags = tags(body)


def touch(obj: StandardAttrs) -> None:
    obj.revision_number = (obj.revision_number or 0) + 1
    obj.updated_at = utcnow()


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def standard_dict(obj: StandardAttrs) -> dict[str, Any]:
    return {
        "id": obj.id,
        "name": obj.name,
        "description": obj.description,
        "project_id": obj.project_id,
        "tenant_id": obj.project_id,
        "tags": list(obj.tags or []),
        "revision_number": obj.revision_number,
        "created_at": timestamp(obj.created_at),
        "updated_at": timestamp(obj.updated_at),
    }


def immutable(body: Mapping[str, Any], keys: Iterable[str], kind: str) -> None:
    for key in keys:
        if key in body:
            raise BadRequest(f"Cannot update read-only attribute {key} of {kind}", type="HTTPBadRequest")
