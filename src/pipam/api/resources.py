"""One router per resource of ``pipam.service.resources``, all built by the same factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from pipam.api.context import authenticated, caller_of, database_of
from pipam.api.listing import links, page_body, parse_query
from pipam.api.rendering import render
from pipam.errors import HTTPBadRequest, TagNotFound
from pipam.service.attributes import Invalid, Resource, check_tag
from pipam.service.database import UnitOfWork
from pipam.service.listing import list_items
from pipam.service.policy import Caller, get_visible
from pipam.service.resources import ResourceModule


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise HTTPBadRequest("Request body is empty; a JSON object is required.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPBadRequest("Malformed request body: not valid JSON.") from None


def fields_of(request: Request) -> list[str]:
    return [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]


def _request_body(definition: Resource, bulk: bool) -> dict[str, Any]:
    """OpenAPI's requestBody of a create (single or bulk) or an update, from the definition."""
    item = definition.body_schema(create=bulk)
    one = {
        "type": "object",
        "properties": {definition.singular: item},
        "required": [definition.singular],
        "additionalProperties": False,
    }
    schema: dict[str, Any] = one
    if bulk:
        many = {
            "type": "object",
            "properties": {definition.plural: {"type": "array", "items": item, "minItems": 1}},
            "required": [definition.plural],
            "additionalProperties": False,
        }
        schema = {"oneOf": [one, many]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _single(body: Any, definition: Resource) -> dict[str, Any]:
    name = definition.singular
    if not isinstance(body, dict) or set(body) != {name} or not isinstance(body[name], dict):
        raise HTTPBadRequest(f'Request body must be an object {{"{name}": {{...}}}}.')
    return dict(body[name])


def router_for(module: ResourceModule) -> APIRouter:
    definition = module.DEFINITION
    router = APIRouter(
        prefix=f"/v2.0/{definition.plural}", tags=[definition.plural], dependencies=[Depends(authenticated)]
    )

    @router.get("", summary=f"List {definition.plural}")
    async def list_(request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        query, fields = parse_query(request.query_params.multi_items(), db.settings.max_page_size)
        base = str(request.url.replace(query=""))

        def run(u: UnitOfWork) -> dict[str, Any]:
            page = list_items(u.session, definition, query, caller)
            items = [render(definition, obj, fields, caller) for obj in page.items]
            return page_body(
                definition.plural, items, links(base, query, fields, [o.id for o in page.items], page.full)
            )

        return await run_in_threadpool(db.run, run, write=False)

    @router.post(
        "",
        status_code=201,
        summary=f"Create one or many {definition.plural}",
        openapi_extra=_request_body(definition, True),
    )
    async def create(request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        body = await json_body(request)
        if isinstance(body, dict) and set(body) == {definition.plural}:
            items = body[definition.plural]
            if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
                raise HTTPBadRequest(f"'{definition.plural}' must be a non-empty list of objects.")
            if len(items) > db.settings.max_bulk:
                raise HTTPBadRequest(
                    f"Bulk request of {len(items)} {definition.plural} exceeds the limit of {db.settings.max_bulk}."
                )
            reqs = [definition.create_request(i, admin=caller.admin) for i in items]

            def bulk(u: UnitOfWork) -> list[dict[str, Any]]:
                made = [module.create(u, r, caller) for r in reqs]  # all or nothing
                return [render(definition, obj, caller=caller) for obj in made]

            return {definition.plural: await run_in_threadpool(db.run, bulk)}
        req = definition.create_request(_single(body, definition), admin=caller.admin)
        return {
            definition.singular: await run_in_threadpool(
                db.run, lambda u: render(definition, module.create(u, req, caller), caller=caller)
            )
        }

    @router.get("/{item_id}", summary=f"Show a {definition.singular}")
    async def show(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        fields = fields_of(request)

        def fetch(u: UnitOfWork) -> dict[str, Any]:
            return render(definition, get_visible(u.session, definition, item_id, caller), fields, caller)

        return {definition.singular: await run_in_threadpool(db.run, fetch, write=False)}

    @router.put("/{item_id}", summary=f"Update a {definition.singular}", openapi_extra=_request_body(definition, False))
    async def update(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        req = definition.update_request(_single(await json_body(request), definition), admin=caller.admin)
        return {
            definition.singular: await run_in_threadpool(
                db.run, lambda u: render(definition, module.update(u, item_id, req, caller), caller=caller)
            )
        }

    @router.delete("/{item_id}", status_code=204, summary=f"Delete a {definition.singular}")
    async def delete(item_id: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        await run_in_threadpool(db.run, lambda u: module.delete(u, item_id, caller))
        return Response(status_code=204)

    _tag_routes(router, module)
    return router


def _tag(tag: str) -> str:
    try:
        return check_tag(tag)
    except Invalid as exc:
        raise HTTPBadRequest(f"Invalid input for tags. Reason: {exc}.") from None


def _tag_routes(router: APIRouter, module: ResourceModule) -> None:
    """The standard-attr-tag extension: replace, add, check and remove the tags of one resource."""
    definition = module.DEFINITION

    def change(caller: Caller, item_id: str, fn: Callable[[list[str]], list[str]]) -> Callable[[UnitOfWork], Any]:
        def run(u: UnitOfWork) -> list[str]:
            obj = get_visible(u.session, definition, item_id, caller)
            req = definition.update_request({"tags": fn(list(obj.tags or []))}, admin=caller.admin)
            return list(module.update(u, item_id, req, caller).tags)

        return run

    @router.put("/{item_id}/tags", summary=f"Replace the tags of a {definition.singular}")
    async def put_tags(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) != {"tags"} or not isinstance(body["tags"], list):
            raise HTTPBadRequest('Request body must be {"tags": [...]}.')
        return {"tags": await run_in_threadpool(db.run, change(caller, item_id, lambda _: body["tags"]))}

    @router.put("/{item_id}/tags/{tag}", status_code=201, summary=f"Add a tag to a {definition.singular}")
    async def add_tag(item_id: str, tag: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        tag = _tag(tag)
        await run_in_threadpool(db.run, change(caller, item_id, lambda t: [*t, tag]))
        return Response(status_code=201)

    @router.get("/{item_id}/tags", summary=f"List the tags of a {definition.singular}")
    async def get_tags(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)

        def run(u: UnitOfWork) -> list[str]:
            return list(get_visible(u.session, definition, item_id, caller).tags or [])

        return {"tags": await run_in_threadpool(db.run, run, write=False)}

    @router.get("/{item_id}/tags/{tag}", status_code=204, summary=f"Check a tag of a {definition.singular}")
    async def has_tag(item_id: str, tag: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)

        def run(u: UnitOfWork) -> bool:
            return tag in (get_visible(u.session, definition, item_id, caller).tags or [])

        if not await run_in_threadpool(db.run, run, write=False):
            raise TagNotFound(f"Tag {tag[:64]} could not be found.")
        return Response(status_code=204)

    @router.delete("/{item_id}/tags/{tag}", status_code=204, summary=f"Remove a tag from a {definition.singular}")
    async def delete_tag(item_id: str, tag: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)

        def drop(tags: list[str]) -> list[str]:
            if tag not in tags:
                raise TagNotFound(f"Tag {tag[:64]} could not be found.")
            return [t for t in tags if t != tag]

        await run_in_threadpool(db.run, change(caller, item_id, drop))
        return Response(status_code=204)

    @router.delete("/{item_id}/tags", status_code=204, summary=f"Remove all tags of a {definition.singular}")
    async def delete_tags(item_id: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        await run_in_threadpool(db.run, change(caller, item_id, lambda _: []))
        return Response(status_code=204)
