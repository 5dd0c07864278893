"""Version discovery, the resource index, extensions, IP availability and the health check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pipam.api.context import caller_of, database_of, read
from pipam.api.listing import links, page_body, parse_query
from pipam.api.rendering import JsonResponse, render, render_many
from pipam.errors import ExtensionNotFound, PipamError
from pipam.ipam import state
from pipam.service import availability
from pipam.service.database import UnitOfWork
from pipam.service.resources import discover

router = APIRouter(default_response_class=JsonResponse)

# Neutron's alias, name and description of each extension Pipam implements (neutron-lib's API
# definitions and neutron/extensions), in the order Neutron's own list groups them.
EXTENSIONS = [
    ("address-scope", "Address scope", "Address scopes extension."),
    (
        "default-subnetpools",
        "Default Subnetpools",
        "Provides ability to mark and use a subnetpool as the default.",
    ),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
    (
        "ip-substring-filtering",
        "IP address substring filtering",
        "Provides IP address substring filtering when listing ports",
    ),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    (
        "network-ip-availability",
        "Network IP Availability",
        "Provides IP availability data for each network and subnet.",
    ),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("port-mac-address-regenerate", "Neutron Port MAC address regenerate", "Network port MAC address regenerate"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    (
        "revision-if-match",
        "If-Match constraints based on revision_number",
        "Extension indicating that If-Match based on revision_number is supported.",
    ),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute: network, port, subnet, subnetpool",
        "Enables to set tag on resources with standard attribute.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
    ),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    (
        "subnetpool-prefix-ops",
        "Subnet Pool Prefix Operations",
        "Provides support for adjusting the prefix list of subnet pools",
    ),
    ("tag-creation", "Tag creation extension", "Allow to create multiple tags for a resource"),
    ("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation", "Allow to tag ports during bulk creation"),
]
UPDATED = "2026-11-25T00:00:00-00:00"


def _ext(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description, "updated": UPDATED, "links": []}


def _root_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


@router.get("/", summary="API versions", tags=["discovery"])
async def versions(request: Request) -> Any:
    href = f"{_root_url(request)}/v2.0/"
    return {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]}


@router.get("/v2.0/", summary="Resources of v2.0", tags=["discovery"])
@router.get("/v2.0", include_in_schema=False)
async def resources(request: Request) -> Any:
    base = f"{_root_url(request)}/v2.0"
    names = [(m.DEFINITION.singular, m.DEFINITION.collection_path) for m in discover()]
    names.append(("network_ip_availability", "network-ip-availabilities"))
    return {
        "resources": [{"name": n, "collection": c, "links": [{"rel": "self", "href": f"{base}/{c}"}]} for n, c in names]
    }


@router.get("/v2.0/extensions", summary="Supported extensions", tags=["discovery"])
async def extensions() -> Any:
    return {"extensions": [_ext(*e) for e in EXTENSIONS]}


@router.get("/v2.0/extensions/{alias}", summary="One extension", tags=["discovery"])
async def extension(alias: str) -> Any:
    for e in EXTENSIONS:
        if e[0] == alias:
            return {"extension": _ext(*e)}
    raise ExtensionNotFound(f"Extension with alias {alias[:64]} does not exist")


@router.get(
    "/v2.0/network-ip-availabilities", summary="IP availability of every network", tags=["network-ip-availabilities"]
)
async def list_availability(request: Request) -> Any:
    db, caller = database_of(request), caller_of(request)
    query, fields = parse_query(request.query_params.multi_items(), db.settings.max_page_size)
    base = str(request.url.replace(query=""))
    definition = availability.DEFINITION

    def run(u: UnitOfWork) -> Any:
        entries, page = availability.list_availability(u, query, caller)
        items = render_many(definition, entries, fields)
        ids = [n.id for n in page.items]
        return page_body(definition.plural, items, links(base, query, fields, ids, page.full))

    return await read(db, run)


@router.get(
    "/v2.0/network-ip-availabilities/{network_id}",
    summary="IP availability of one network",
    tags=["network-ip-availabilities"],
)
async def show_availability(network_id: str, request: Request) -> Any:
    db, caller = database_of(request), caller_of(request)
    entry = await read(db, lambda u: availability.show(u, network_id, caller))
    return {"network_ip_availability": render(availability.DEFINITION, entry)}


@router.get("/healthz", summary="Ready: the database answers and this server can use its IPAM backend", tags=["health"])
async def healthz(request: Request) -> Any:
    """200 when this server can serve every request; 503 (load balancers take it out) when the database
    is away or the active IPAM backend is one this server cannot use. A fenced migration is reported
    but is not "not ready": every server is fenced alike, and the fence is short."""
    db = database_of(request)

    def probe(u: UnitOfWork) -> dict[str, Any]:
        status = state.read(u.session)
        db.backend(status.active)
        return {
            "status": "ok",
            "database": "ok",
            "active_backend": status.active,
            "migrating_to": status.shadow,
            "fenced": status.fence is not None,
        }

    try:
        return await read(db, probe)
    except PipamError as exc:
        reason = exc.message
    except Exception:  # the details stay in the log: health checks are unauthenticated
        reason = "database unavailable"
    return JSONResponse(
        {"status": "unavailable", "reason": reason},
        status_code=503,
        headers={"Retry-After": str(db.settings.retry_after)},
    )
