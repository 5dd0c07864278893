"""One router per resource of ``pipam.service.resources``, all built by the same factory."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import inspect, select
from starlette.concurrency import run_in_threadpool

from pipam.api.context import caller_of, database_of, read, write
from pipam.api.listing import links, page_body, parse_query
from pipam.api.rendering import JsonResponse, render, render_many
from pipam.api.routes import DirectRoute
from pipam.errors import BadRequest, HTTPBadRequest, TagNotFound
from pipam.service import attributes, tags
from pipam.service.attributes import MemberAction, Resource, Tags
from pipam.service.common import require_revision
from pipam.service.database import UnitOfWork
from pipam.service.listing import list_items
from pipam.service.policy import Caller, get_visible, show_visible
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


def revision_constraint(request: Request, definition: Resource) -> int | None:
    """``If-Match: revision_number=N`` (extension revision-if-match), parsed as Neutron does: other
    entity tags are ignored; a malformed or repeated revision_number is a bad request."""
    found: int | None = None
    for raw in request.headers.get("if-match", "").split(","):
        etag = raw.strip().removeprefix("W/").strip('"')
        if not etag.startswith("revision_number="):
            continue
        if found is not None:
            raise BadRequest("Bad if-match request: Multiple revision_number etags are not supported.")
        try:
            found = int(etag.removeprefix("revision_number="))
        except ValueError:
            raise BadRequest(
                "Bad if-match request: Revision number etag must be in the format of revision_number=<int>."
            ) from None
    if found is not None and not definition.revisioned:
        raise BadRequest(f"Bad {definition.plural} request: Revision matching not supported for this resource.")
    return found


# Documented, so that the OpenAPI document (and the schema fuzzing) knows the header.
IF_MATCH = {
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": "revision_number=N: change only that revision of the resource (412 otherwise)",
            "schema": {"type": "string"},
        }
    ]
}


def _constrained(definition: Resource, item_id: str, caller: Caller, expected: int | None, u: UnitOfWork) -> None:
    """Lock the resource and hold the change to the revision the client last saw."""
    if expected is not None:
        require_revision(get_visible(u.session, definition, item_id, caller, for_update=True), expected)


def create_many(
    u: UnitOfWork, module: ResourceModule, reqs: list[attributes.Request], caller: Caller
) -> list[dict[str, Any]]:
    """A bulk create: all or nothing, in the caller's transaction, rendered as the API answers it."""
    definition = module.DEFINITION
    # A module with a batch create of its own (ports: addresses claimed in batches) does them all at once.
    batch = getattr(module, "create_many", None)
    made = batch(u, reqs, caller) if batch is not None else [module.create(u, r, caller) for r in reqs]
    # Read back the ones with attributes still to load, in one query: the relationships rendering reads
    # (the mapper's selectin ones, such as a subnet's pools) then load in one statement for the batch,
    # not one lazy load per object. A batch create's ports come back whole, addresses included.
    model = definition.model
    unloaded = [obj.id for obj in made if inspect(obj).unloaded]
    if unloaded:
        u.session.execute(select(model).where(model.id.in_(unloaded))).all()
    return render_many(definition, made, caller=caller)


def router_for(module: ResourceModule) -> APIRouter:
    definition = module.DEFINITION
    router = APIRouter(
        prefix=f"/v2.0/{definition.collection_path}",
        tags=[definition.plural],
        default_response_class=JsonResponse,
        route_class=DirectRoute,
    )

    @router.get("", summary=f"List {definition.plural}")
    async def list_(request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        query, fields = parse_query(request.query_params.multi_items(), db.settings.max_page_size)
        base = str(request.url.replace(query=""))

        def run(u: UnitOfWork) -> dict[str, Any]:
            page = list_items(u.tx, definition, query, caller, fields=fields)
            items = render_many(definition, page.items, fields, caller)
            return page_body(
                definition.plural, items, links(base, query, fields, [o.id for o in page.items], page.full)
            )

        return JsonResponse(await read(db, run))

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
            reqs = [definition.create_request(i) for i in items]

            made = await run_in_threadpool(db.run, lambda u: create_many(u, module, reqs, caller))
            return JsonResponse({definition.plural: made}, status_code=201)
        req = definition.create_request(_single(body, definition))
        made = await write(db, lambda u: render(definition, module.create(u, req, caller), caller=caller))
        return JsonResponse({definition.singular: made}, status_code=201)

    @router.get("/{item_id}", summary=f"Show a {definition.singular}")
    async def show(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        fields = fields_of(request)

        def fetch(u: UnitOfWork) -> dict[str, Any]:
            shown = show_visible(u.tx, definition, item_id, caller)
            return render(definition, shown, fields, caller)

        return JsonResponse({definition.singular: await read(db, fetch)})

    @router.put(
        "/{item_id}",
        summary=f"Update a {definition.singular}",
        openapi_extra={**_request_body(definition, False), **IF_MATCH},
    )
    async def update(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        req = definition.update_request(_single(await json_body(request), definition))
        expected = revision_constraint(request, definition)

        def run(u: UnitOfWork) -> dict[str, Any]:
            _constrained(definition, item_id, caller, expected, u)
            return render(definition, module.update(u, item_id, req, caller), caller=caller)

        return JsonResponse({definition.singular: await write(db, run)})

    @router.delete("/{item_id}", status_code=204, summary=f"Delete a {definition.singular}", openapi_extra=IF_MATCH)
    async def delete(item_id: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        expected = revision_constraint(request, definition)

        def run(u: UnitOfWork) -> None:
            _constrained(definition, item_id, caller, expected, u)
            module.delete(u, item_id, caller)

        await write(db, run)
        return Response(status_code=204)

    for action in definition.actions:
        _action_route(router, module, action)
    if definition.taggable:
        _tag_routes(router, definition)
    return router


def _action_route(router: APIRouter, module: ResourceModule, action: MemberAction) -> None:
    """A member action of the definition, served by the module's function of the same name."""
    definition = module.DEFINITION
    handler = getattr(module, action.name)

    async def endpoint(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        expected = revision_constraint(request, definition)
        body = await json_body(request) if action.method in ("PUT", "POST") else None

        def run(u: UnitOfWork) -> dict[str, Any]:
            _constrained(definition, item_id, caller, expected, u)
            return render(definition, handler(u, item_id, body, caller), action.response, caller)

        return JsonResponse(await write(db, run), status_code=action.status)

    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": action.body}}}}
    router.add_api_route(
        f"/{{item_id}}/{action.name}",
        endpoint,
        methods=[action.method],
        status_code=action.status,
        summary=action.summary or f"{action.name} of a {definition.singular}",
        openapi_extra={**(body if action.body else {}), **IF_MATCH},
    )


TAGS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "properties": {"tags": Tags().schema()}}}},
    }
}


def _tag_routes(router: APIRouter, definition: Resource) -> None:
    """Extensions standard-attr-tag and tag-creation: the tags of one resource."""

    @router.get("/{item_id}/tags", summary=f"List the tags of a {definition.singular}")
    async def get_tags(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        return JsonResponse({"tags": await read(db, lambda u: tags.listed(u, definition, item_id, caller))})

    @router.put("/{item_id}/tags", summary=f"Replace the tags of a {definition.singular}", openapi_extra=TAGS_BODY)
    async def put_tags(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        wanted = tags.body_tags(await json_body(request))
        await write(db, lambda u: tags.replace(u, definition, item_id, wanted, caller))
        return JsonResponse({"tags": wanted})

    @router.post("/{item_id}/tags", summary=f"Add tags to a {definition.singular}", openapi_extra=TAGS_BODY)
    async def post_tags(item_id: str, request: Request) -> Any:
        db, caller = database_of(request), caller_of(request)
        wanted = tags.body_tags(await json_body(request))
        await write(db, lambda u: tags.add(u, definition, item_id, wanted, caller))
        return JsonResponse({"tags": wanted})

    @router.delete("/{item_id}/tags", status_code=204, summary=f"Remove all tags of a {definition.singular}")
    async def delete_tags(item_id: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        await write(db, lambda u: tags.remove_all(u, definition, item_id, caller))
        return Response(status_code=204)

    @router.get("/{item_id}/tags/{tag}", status_code=204, summary=f"Check a tag of a {definition.singular}")
    async def has_tag(item_id: str, tag: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        tag = tags.path_tag(tag)
        if not await read(db, lambda u: tags.has(u, definition, item_id, tag, caller)):
            raise TagNotFound(f"Tag {tag} could not be found.")
        return Response(status_code=204)

    @router.put("/{item_id}/tags/{tag}", status_code=201, summary=f"Add a tag to a {definition.singular}")
    async def add_tag(item_id: str, tag: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        tag = tags.path_tag(tag)
        await write(db, lambda u: tags.add(u, definition, item_id, [tag], caller))
        return Response(status_code=201)

    @router.delete("/{item_id}/tags/{tag}", status_code=204, summary=f"Remove a tag from a {definition.singular}")
    async def delete_tag(item_id: str, tag: str, request: Request) -> Response:
        db, caller = database_of(request), caller_of(request)
        tag = tags.path_tag(tag)
        await write(db, lambda u: tags.remove(u, definition, item_id, tag, caller))
        return Response(status_code=204)
