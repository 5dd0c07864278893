"""Tags of one resource: Neutron's standard-attr-tag and tag-creation extensions.

Bodies are checked before the resource is looked up and the per-resource limit after, as Neutron
does; a change of the tag set is a change of the resource (a new revision number).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import lazyload

from pipam.errors import BadRequest, InvalidInput, TagNotFound
from pipam.service.attributes import TAGS_PER_RESOURCE, Invalid, Resource, check_tag, check_tag_list, tag_limit_message
from pipam.service.common import touch
from pipam.service.database import UnitOfWork
from pipam.service.policy import Caller, authorize, fetch, get_visible


def body_tags(body: Any) -> list[str]:
    """The ``{"tags": [...]}`` body of a replace or an add-many."""
    if not isinstance(body, dict) or "tags" not in body:
        raise InvalidInput("Invalid input for operation: Invalid tags body.")
    try:
        return check_tag_list(body["tags"])
    except Invalid as exc:
        raise InvalidInput(f"Invalid input for operation: {exc}.") from None


def path_tag(tag: str) -> str:
    """A tag named in the URL."""
    try:
        return check_tag(tag)
    except Invalid as exc:
        raise InvalidInput(f"Invalid input for operation: {exc}.") from None


# A tag operation reads the row alone: what its relationships would load eagerly (a port's addresses, a
# subnet's pools) is a statement each that nothing here uses.
_ROW_ALONE = (lazyload("*"),)


def listed(uow: UnitOfWork, resource: Resource, item_id: str, caller: Caller) -> list[str]:
    return list(get_visible(uow.session, resource, item_id, caller, options=_ROW_ALONE).tags or [])


def has(uow: UnitOfWork, resource: Resource, item_id: str, tag: str, caller: Caller) -> bool:
    return tag in listed(uow, resource, item_id, caller)


def replace(uow: UnitOfWork, resource: Resource, item_id: str, tags: list[str], caller: Caller) -> None:
    _store(uow, resource, _owned(uow, resource, item_id, caller), set(tags))


def add(uow: UnitOfWork, resource: Resource, item_id: str, tags: list[str], caller: Caller) -> None:
    """Add tags, keeping those already there (PUT of one tag; POST of many, extension tag-creation)."""
    obj = _owned(uow, resource, item_id, caller)
    _store(uow, resource, obj, set(obj.tags or []) | set(tags))


def remove(uow: UnitOfWork, resource: Resource, item_id: str, tag: str, caller: Caller) -> None:
    obj = _owned(uow, resource, item_id, caller)
    if tag not in (obj.tags or []):
        raise TagNotFound(f"Tag {tag} could not be found.")
    _store(uow, resource, obj, set(obj.tags) - {tag})


def remove_all(uow: UnitOfWork, resource: Resource, item_id: str, caller: Caller) -> None:
    _store(uow, resource, _owned(uow, resource, item_id, caller), set())


def _owned(uow: UnitOfWork, resource: Resource, item_id: str, caller: Caller) -> Any:
    obj = fetch(uow.session, resource, item_id, for_update=True, options=_ROW_ALONE)
    authorize(uow.session, caller, resource, "update", obj, ["tags"])
    return obj


def _store(uow: UnitOfWork, resource: Resource, obj: Any, tags: set[str]) -> None:
    if len(tags) > TAGS_PER_RESOURCE:
        raise BadRequest(f"Bad {resource.plural} request: {tag_limit_message()}.")
    if tags != set(obj.tags or []):
        obj.tags = sorted(tags)
        touch(obj)
        uow.session.flush()
