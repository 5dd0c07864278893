"""Request bodies as OpenAPI documents them. The service validates; these only describe."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Standard(_Body):
    name: str | None = Field(None, max_length=255)
    description: str | None = Field(None, max_length=255)
    tags: list[str] | None = None


class Owned(Standard):
    project_id: str | None = Field(None, max_length=255)
    tenant_id: str | None = Field(None, max_length=255)


class NetworkCreate(Owned):
    admin_state_up: bool | None = None
    shared: bool | None = None
    mtu: int | None = Field(None, ge=68, le=65535)


class NetworkUpdate(Standard):
    admin_state_up: bool | None = None
    shared: bool | None = None
    mtu: int | None = Field(None, ge=68, le=65535)


class Pool(_Body):
    start: str
    end: str


class Route(_Body):
    destination: str
    nexthop: str


class SubnetCreate(Owned):
    network_id: str
    ip_version: int | None = Field(None, description="4 or 6")
    cidr: str | None = None
    gateway_ip: str | None = None
    allocation_pools: list[Pool] | None = None
    enable_dhcp: bool | None = None
    ipv6_ra_mode: str | None = Field(None, description="slaac, dhcpv6-stateful or dhcpv6-stateless")
    ipv6_address_mode: str | None = Field(None, description="slaac, dhcpv6-stateful or dhcpv6-stateless")
    subnetpool_id: str | None = None
    prefixlen: int | None = None
    use_default_subnetpool: bool | None = None
    dns_nameservers: list[str] | None = None
    host_routes: list[Route] | None = None


class SubnetUpdate(Standard):
    gateway_ip: str | None = None
    allocation_pools: list[Pool] | None = None
    enable_dhcp: bool | None = None
    dns_nameservers: list[str] | None = None
    host_routes: list[Route] | None = None


class FixedIp(_Body):
    subnet_id: str | None = None
    ip_address: str | None = None


class PortCreate(Owned):
    network_id: str
    mac_address: str | None = None
    admin_state_up: bool | None = None
    device_id: str | None = Field(None, max_length=255)
    device_owner: str | None = Field(None, max_length=255)
    fixed_ips: list[FixedIp] | None = None


class PortUpdate(Standard):
    admin_state_up: bool | None = None
    device_id: str | None = Field(None, max_length=255)
    device_owner: str | None = Field(None, max_length=255)
    fixed_ips: list[FixedIp] | None = None


class SubnetPoolCreate(Owned):
    prefixes: list[str]
    default_prefixlen: int | None = None
    min_prefixlen: int | None = None
    max_prefixlen: int | None = None
    shared: bool | None = None
    is_default: bool | None = None
    default_quota: int | None = None
    address_scope_id: str | None = None


class SubnetPoolUpdate(Standard):
    prefixes: list[str] | None = None
    default_prefixlen: int | None = None
    min_prefixlen: int | None = None
    max_prefixlen: int | None = None
    is_default: bool | None = None
    default_quota: int | None = None


def envelope(singular: str, plural: str, model: type[BaseModel], bulk: bool) -> dict[str, Any]:
    """The requestBody of a create (single or bulk) or an update, for ``openapi_extra``."""
    item = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = item.pop("$defs", {})
    one = {"type": "object", "properties": {singular: item}, "required": [singular], "additionalProperties": False}
    schema: dict[str, Any] = one
    if bulk:
        many = {
            "type": "object",
            "properties": {plural: {"type": "array", "items": item, "minItems": 1}},
            "required": [plural],
            "additionalProperties": False,
        }
        schema = {"oneOf": [one, many]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}, "_defs": defs}
