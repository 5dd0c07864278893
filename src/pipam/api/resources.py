"""The four resource collections, all built by one router factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from pipam.api import schemas
from pipam.api.context import caller_of, database_of
from pipam.api.listing import ListSpec, list_rows, parse_query
from pipam.db.models import IPAllocation, Network, Port, Subnet, SubnetPool
from pipam.errors import BadRequest, NotFound
from pipam.service import networks, ports, subnetpools, subnets
from pipam.service.common import Caller, get_or_404
from pipam.service.database import UnitOfWork


@dataclass
class Resource:
    singular: str
    plural: str
    kind: str
    model: type
    service: Any
    render: Callable[[UnitOfWork, Any], dict[str, Any]]
    create_body: type[BaseModel]
    update_body: type[BaseModel]
    shared_column: str | None = None
    extra_filters: dict[str, Callable[[list[str]], Any]] | None = None


def _fixed_ips_filter(values: list[str]) -> Any:
    """``fixed_ips=ip_address=10.0.0.5`` / ``fixed_ips=subnet_id=X``: ports holding such an address."""
    conditions = []
    for value in values:
        key, _, wanted = value.partition("=")
        if key == "ip_address":
            conditions.append(IPAllocation.ip_address == wanted)
        elif key == "subnet_id":
            conditions.append(IPAllocation.subnet_id == wanted)
        elif key == "ip_address_substr":
            conditions.append(IPAllocation.ip_address.contains(wanted))
        else:
            raise BadRequest(f"Invalid fixed_ips filter '{value}': use ip_address=, subnet_id= or ip_address_substr=")
    return Port.id.in_(select(IPAllocation.port_id).where(or_(*conditions)))


RESOURCES = [
    Resource(
        "network",
        "networks",
        "Network",
        Network,
        networks,
        networks.to_dict,
        schemas.NetworkCreate,
        schemas.NetworkUpdate,
        shared_column="shared",
    ),
    Resource(
        "subnet",
        "subnets",
        "Subnet",
        Subnet,
        subnets,
        lambda u, o: subnets.to_dict(o),
        schemas.SubnetCreate,
        schemas.SubnetUpdate,
    ),
    Resource(
        "port",
        "ports",
        "Port",
        Port,
        ports,
        lambda u, o: ports.to_dict(o),
        schemas.PortCreate,
        schemas.PortUpdate,
        extra_filters={"fixed_ips": _fixed_ips_filter},
    ),
    Resource(
        "subnetpool",
        "subnetpools",
        "SubnetPool",
        SubnetPool,
        subnetpools,
        lambda u, o: subnetpools.to_dict(o),
        schemas.SubnetPoolCreate,
        schemas.SubnetPoolUpdate,
        shared_column="shared",
    ),
]


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest("Request body is empty; a JSON object is required.", type="HTTPBadRequest")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed request body: not valid JSON.", type="HTTPBadRequest") from None


def _fields(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
    return {k: v for k, v in item.items() if k in fields} if fields else item


def router_for(res: Resource) -> APIRouter:
    router = APIRouter(prefix=f"/v2.0/{res.plural}", tags=[res.plural])
    create_extra = schemas.envelope(res.singular, res.plural, res.create_body, bulk=True)
    update_extra = schemas.envelope(res.singular, res.plural, res.update_body, bulk=False)
    create_extra.pop("_defs")
    update_extra.pop("_defs")

    @router.get("", summary=f"List {res.plural}")
    async def list_(request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        query = parse_query(request.query_params.multi_items(), db.settings.max_page_size)
        base = str(request.url.replace(query=""))
        spec = ListSpec(res.model, res.plural, res.render, res.extra_filters or {}, res.shared_column)
        return await run_in_threadpool(
            db.run, lambda u: list_rows(u.session, u, spec, query, caller, base), write=False
        )

    @router.post("", status_code=201, summary=f"Create one or many {res.plural}", openapi_extra=create_extra)
    async def create(request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        body = await json_body(request)
        if isinstance(body, dict) and set(body) == {res.plural}:
            items = body[res.plural]
            if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
                raise BadRequest(f"'{res.plural}' must be a non-empty list of objects.", type="HTTPBadRequest")
            if len(items) > db.settings.max_bulk:
                raise BadRequest(
                    f"Bulk request of {len(items)} {res.plural} exceeds the limit of {db.settings.max_bulk}.",
                    type="HTTPBadRequest",
                )

            def bulk(u: UnitOfWork) -> list[dict[str, Any]]:
                return [res.service.create(u, dict(i), caller) for i in items]  # all or nothing

            return {res.plural: await run_in_threadpool(db.run, bulk)}
        item = _single(body, res)
        return {res.singular: await run_in_threadpool(db.run, lambda u: res.service.create(u, item, caller))}

    @router.get("/{item_id}", summary=f"Show a {res.singular}")
    async def show(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)

        def fetch(u: UnitOfWork) -> dict[str, Any]:
            obj = get_or_404(u.session, res.model, item_id, res.kind, caller, shared_attr=res.shared_column)
            return res.render(u, obj)

        return {res.singular: _fields(request, await run_in_threadpool(db.run, fetch, write=False))}

    @router.put("/{item_id}", summary=f"Update a {res.singular}", openapi_extra=update_extra)
    async def update(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        item = _single(await json_body(request), res)
        return {res.singular: await run_in_threadpool(db.run, lambda u: res.service.update(u, item_id, item, caller))}

    @router.delete("/{item_id}", status_code=204, summary=f"Delete a {res.singular}")
    async def delete(item_id: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        await run_in_threadpool(db.run, lambda u: res.service.delete(u, item_id, caller))
        return Response(status_code=204)

    _tag_routes(router, res)
    return router


def _single(body: Any, res: Resource) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != {res.singular} or not isinstance(body[res.singular], dict):
        raise BadRequest(f'Request body must be an object {{"{res.singular}": {{...}}}}.', type="HTTPBadRequest")
    return dict(body[res.singular])


def _tag_routes(router: APIRouter, res: Resource) -> None:
    """The standard-attr-tag extension: replace, add, check and remove tags of one resource."""

    def change(request: Request, item_id: str, fn: Callable[[list[str]], list[str]]) -> Callable[[UnitOfWork], Any]:
        caller: Caller = caller_of(request)

        def run(u: UnitOfWork) -> list[str]:
            obj = get_or_404(u.session, res.model, item_id, res.kind, caller)
            current = list(obj.tags or [])
            new = fn(current)
            res.service.update(u, item_id, {"tags": new}, caller)
            return sorted(set(new))

        return run

    @router.put("/{item_id}/tags", summary=f"Replace the tags of a {res.singular}")
    async def put_tags(item_id: str, request: Request) -> Any:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            raise BadRequest('Request body must be {"tags": [...]}.', type="HTTPBadRequest")
        db = database_of(request)
        return {"tags": await run_in_threadpool(db.run, change(request, item_id, lambda _: body["tags"]))}

    @router.put("/{item_id}/tags/{tag}", status_code=201, summary=f"Add a tag to a {res.singular}")
    async def add_tag(item_id: str, tag: str, request: Request) -> Response:
        db = database_of(request)
        await run_in_threadpool(db.run, change(request, item_id, lambda t: [*t, tag]))
        return Response(status_code=201)

    @router.get("/{item_id}/tags", summary=f"List the tags of a {res.singular}")
    async def get_tags(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)

        def run(u: UnitOfWork) -> list[str]:
            return list(get_or_404(u.session, res.model, item_id, res.kind, caller).tags or [])

        return {"tags": await run_in_threadpool(db.run, run, write=False)}

    @router.delete("/{item_id}/tags/{tag}", status_code=204, summary=f"Remove a tag from a {res.singular}")
    async def delete_tag(item_id: str, tag: str, request: Request) -> Response:
        db = database_of(request)

        def drop(tags: list[str]) -> list[str]:
            if tag not in tags:
                raise NotFound(f"Tag {tag} could not be found.", type="TagNotFound")
            return [t for t in tags if t != tag]

        await run_in_threadpool(db.run, change(request, item_id, drop))
        return Response(status_code=204)

    @router.delete("/{item_id}/tags", status_code=204, summary=f"Remove all tags of a {res.singular}")
    async def delete_tags(item_id: str, request: Request) -> Response:
        db = database_of(request)
        await run_in_threadpool(db.run, change(request, item_id, lambda _: []))
        return Response(status_code=204)
