"""Version discovery, the resource index, extensions, IP availability and the health check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, text
from starlette.concurrency import run_in_threadpool

from pipam.api.context import caller_of, database_of
from pipam.api.listing import ListSpec, list_rows, parse_query
from pipam.db.models import IpamState, Network, Subnet
from pipam.errors import BadRequest, NotFound
from pipam.service import availability
from pipam.service.database import UnitOfWork

router = APIRouter()

EXTENSIONS = [
    (
        "network-ip-availability",
        "Network IP Availability",
        "Provides IP availability data for each network and subnet.",
    ),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources.",
    ),
    ("standard-attr-tag", "Tag support for resources with standard attribute", "Enables to set tag on resources."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("fields", "Fields selection", "Extension that indicates that the fields query parameter is supported."),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
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
    names = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
        ("subnetpool", "subnetpools"),
        ("network_ip_availability", "network-ip-availabilities"),
    ]
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
    raise NotFound(f"Extension with alias {alias} does not exist", type="ExtensionNotFound")


AVAIL_FILTERS = {"network_id", "network_name", "project_id", "tenant_id", "ip_version"}


@router.get(
    "/v2.0/network-ip-availabilities", summary="IP availability of every network", tags=["network-ip-availabilities"]
)
async def list_availability(request: Request) -> Any:
    db, caller = database_of(request), caller_of(request)
    items = request.query_params.multi_items()
    ip_versions = [int(v) for k, v in items if k == "ip_version" and v in ("4", "6")]
    renamed = [
        ("name" if k == "network_name" else "id" if k == "network_id" else k, v) for k, v in items if k != "ip_version"
    ]
    for key, _ in items:
        if key not in AVAIL_FILTERS | {"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir"}:
            raise BadRequest(f"[{key}] is invalid attribute for filtering")
    query = parse_query(renamed, db.settings.max_page_size)

    def run(u: UnitOfWork) -> Any:
        def render(uow: UnitOfWork, net: Network) -> dict[str, Any]:
            entry = availability.for_networks(uow, [net])[0]
            if ip_versions:
                subs = [s for s in entry["subnet_ip_availability"] if s["ip_version"] in ip_versions]
                entry.update(
                    subnet_ip_availability=subs,
                    total_ips=sum(s["total_ips"] for s in subs),
                    used_ips=sum(s["used_ips"] for s in subs),
                )
            return {**entry, "id": net.id}

        spec = ListSpec(Network, "network_ip_availabilities", render, shared_column="shared")
        if ip_versions:
            spec.extra_filters["_v"] = lambda _: Network.id.in_(
                select(Subnet.network_id).where(Subnet.ip_version.in_(ip_versions))
            )
            query.filters["_v"] = ["x"]
        out = list_rows(u.session, u, spec, query, caller, str(request.url.replace(query="")))
        for entry in out["network_ip_availabilities"]:
            entry.pop("id", None)
        return out

    return await run_in_threadpool(db.run, run, write=False)


@router.get(
    "/v2.0/network-ip-availabilities/{network_id}",
    summary="IP availability of one network",
    tags=["network-ip-availabilities"],
)
async def show_availability(network_id: str, request: Request) -> Any:
    db, caller = database_of(request), caller_of(request)
    entry = await run_in_threadpool(db.run, lambda u: availability.show(u, network_id, caller), write=False)
    return {"network_ip_availability": entry}


@router.get("/healthz", summary="Health: the database answers", tags=["health"])
async def healthz(request: Request) -> Any:
    db = database_of(request)

    def probe(u: UnitOfWork) -> dict[str, Any]:
        u.session.execute(text("SELECT 1"))
        state = u.session.scalar(select(IpamState).where(IpamState.id == 1))
        return {
            "status": "ok",
            "database": "ok",
            "ipam_driver": db.driver_name,
            "active_backend": state.active_backend if state else None,
            "fenced": bool(state and state.fence_migration_id),
        }

    try:
        return await run_in_threadpool(db.run, probe, write=False)
    except Exception as exc:
        detail = str(getattr(exc, "message", None) or exc).splitlines()[0]
        return JSONResponse(
            {"status": "unavailable", "database": detail},
            status_code=503,
            headers={"Retry-After": str(db.settings.retry_after)},
        )
