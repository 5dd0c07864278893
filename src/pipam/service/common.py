"""Standard attributes every resource carries: set on create, changed on update, revision bumps."""

from __future__ import annotations

from typing import Any

from pipam.db.base import utcnow
from pipam.errors import RevisionNumberConstraintFailed
from pipam.service.attributes import Request
from pipam.service.policy import Caller


def new_standard(obj: Any, req: Request, caller: Caller) -> None:
    obj.project_id = caller.owner_for(req)
    obj.name = req.get("name", "")
    obj.description = req.get("description", "")
    obj.tags = list(req.get("tags", []))
    now = utcnow()
    obj.created_at = obj.updated_at = now
    obj.revision_number = 0


def update_standard(obj: Any, req: Request) -> None:
    for key in ("name", "description", "tags"):
        if key in req:
            setattr(obj, key, list(req[key]) if key == "tags" else req[key])


def touch(obj: Any) -> None:
    """A change a client can see: a new revision number and update time."""
    obj.revision_number = (obj.revision_number or 0) + 1
    obj.updated_at = utcnow()


def require_revision(obj: Any, expected: int) -> None:
    """``If-Match: revision_number=N`` (extension revision-if-match): change only that revision."""
    if obj.revision_number != expected:
        raise RevisionNumberConstraintFailed(expected, obj.revision_number)
