"""Address scopes: subnet pools of one scope never share address space (extension address-scope)."""

from __future__ import annotations

from sqlalchemy import exists, select

from pipam.db.models import AddressScope, SubnetPool
from pipam.errors import AddressScopeInUse, AddressScopeNotFound, AddressScopeUpdateError
from pipam.service.attributes import Attr, Bool, Int, Request, Resource, Str, Uuid
from pipam.service.database import UnitOfWork
from pipam.service.policy import (
    ADMIN,
    Caller,
    authorize,
    authorize_create,
    fetch,
    get_visible,
    new_target,
    sent_attributes,
)

# Not a standard-attribute resource in Neutron: no description, tags, revision number or timestamps.
DEFINITION = Resource(
    singular="address_scope",
    plural="address_scopes",
    path="address-scopes",
    label="Address scope",
    model=AddressScope,
    not_found=AddressScopeNotFound,
    shared_column="shared",
    attributes=(
        Attr("id", Uuid(), filter=True, sort=True),
        Attr("name", Str(255), post=True, put=True, default="", filter=True, sort=True),
        Attr("project_id", Str(255), post=True, filter=True, sort=True),
        Attr("tenant_id", Str(255), post=True, filter=True, sort=True, alias_of="project_id"),
        Attr("shared", Bool(), post=True, put=True, default=False, filter=True, sort=True, admin_only=True),
        Attr("ip_version", Int(choices=(4, 6)), post=True, required=True, filter=True, sort=True),
    ),
)


def get(uow: UnitOfWork, scope_id: str, caller: Caller = ADMIN, *, for_update: bool = False) -> AddressScope:
    return get_visible(uow.session, DEFINITION, scope_id, caller, for_update=for_update)


def create(uow: UnitOfWork, req: Request, caller: Caller = ADMIN) -> AddressScope:
    project = caller.owner_for(req)
    authorize_create(caller, DEFINITION, new_target(project), sent_attributes(DEFINITION, req, create=True))
    scope = AddressScope(project_id=project, name=req["name"], shared=req["shared"], ip_version=req["ip_version"])
    uow.session.add(scope)
    uow.session.flush()
    return scope


def update(uow: UnitOfWork, scope_id: str, req: Request, caller: Caller = ADMIN) -> AddressScope:
    scope = fetch(uow.session, DEFINITION, scope_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "update", scope, sent_attributes(DEFINITION, req))
    if scope.shared and req.get("shared", True) is False:
        # Projects' subnet pools may be in it: taking the scope away from them is not supported.
        raise AddressScopeUpdateError(
            f"Unable to update address scope {scope_id} : Shared address scope can't be unshared."
        )
    for key in ("name", "shared"):
        if key in req:
            setattr(scope, key, req[key])
    uow.session.flush()
    return scope


def delete(uow: UnitOfWork, scope_id: str, caller: Caller = ADMIN) -> None:
    scope = fetch(uow.session, DEFINITION, scope_id, for_update=True)
    authorize(uow.session, caller, DEFINITION, "delete", scope)
    if uow.session.scalar(select(exists().where(SubnetPool.address_scope_id == scope_id))):
        raise AddressScopeInUse(
            f"Unable to complete operation on address scope {scope_id}. There are one or more subnet pools "
            "in use on the address scope."
        )
    uow.session.delete(scope)
    uow.session.flush()
