"""Who is asking, what they may see and change: the one place the service decides visibility."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from pipam.errors import HTTPBadRequest, PolicyNotAuthorized
from pipam.service.attributes import Request, Resource


@dataclass(frozen=True)
class Caller:
    """The caller's project, and whether it is limited to that project (a project token) or an admin."""

    project_id: str = ""
    restricted: bool = False

    @property
    def admin(self) -> bool:
        return not self.restricted

    def owner_for(self, request: Request) -> str:
        """The project a new resource belongs to."""
        project = request.get("project_id") or self.project_id or ""
        if self.restricted and project != self.project_id:
            raise HTTPBadRequest(
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request "
                "requires admin privileges"
            )
        return project

    def can_see(self, obj: Any, resource: Resource) -> bool:
        if not self.restricted or obj.project_id == self.project_id:
            return True
        return bool(resource.shared_column and getattr(obj, resource.shared_column))

    def visibility(self, resource: Resource) -> ColumnElement[bool] | None:
        """A WHERE clause limiting a list to what the caller may see; None for an admin."""
        if not self.restricted:
            return None
        model = resource.model
        own = model.project_id == self.project_id  # type: ignore[attr-defined]
        if resource.shared_column:
            return or_(own, getattr(model, resource.shared_column).is_(True))
        return own

    def require_admin(self, action: str) -> None:
        if self.restricted:
            raise PolicyNotAuthorized(f"rule:{action} is disallowed by policy")


ADMIN = Caller()


def get_visible(
    session: Session, resource: Resource, item_id: object, caller: Caller = ADMIN, *, for_update: bool = False
) -> Any:
    """The resource by id, as the caller may see it; anything else is the resource's 404."""
    if not isinstance(item_id, str) or len(item_id) > 36 or "\x00" in item_id:
        raise resource.missing(str(item_id)[:64])
    obj = session.get(resource.model, item_id, with_for_update=for_update or None)
    if obj is None or not caller.can_see(obj, resource):
        raise resource.missing(item_id)
    return obj


def require_owner(obj: Any, resource: Resource, caller: Caller) -> None:
    """Shared resources are readable by all projects; only their own project may change them."""
    if caller.restricted and obj.project_id != caller.project_id:
        raise resource.missing(obj.id)
