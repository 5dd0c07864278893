"""Allocation pools of a subnet: defaults and the checks DESIGN.md lists."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

from pipam.errors import BadRequest, Conflict, InvalidInput
from pipam.ipam.addr import IPAddress, IPNetwork, host_bounds, int_to_ip, parse_ip
from pipam.ipam.interface import Pool


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[Pool]:
    """The whole host range minus the gateway (one or two pools)."""
    first, last = host_bounds(net)
    runs: list[tuple[int, int]] = [(first, last)]
    if gateway is not None and first <= int(gateway) <= last:
        g = int(gateway)
        runs = [(a, b) for a, b in ((first, g - 1), (g + 1, last)) if a <= b]
    return [(int_to_ip(a, net.version), int_to_ip(b, net.version)) for a, b in runs]


def parse_pools(value: Any, net: IPNetwork) -> list[Pool]:
    if not isinstance(value, list):
        raise InvalidInput("Invalid input for allocation_pools. Reason: must be a list of {start, end}.")
    pools: list[Pool] = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"start", "end"} or not {"start", "end"} <= set(item):
            raise InvalidInput(
                f"Invalid input for allocation_pools. Reason: '{item}' is not of the form {{start, end}}."
            )
        start, end = parse_ip(item["start"]), parse_ip(item["end"])
        if start.version != net.version or end.version != net.version or start > end:
            raise BadRequest(f"The allocation pool {start}-{end} is not valid.", type="InvalidAllocationPool")
        pools.append((start, end))
    return pools


def validate_pools(pools: list[Pool], net: IPNetwork, gateway: IPAddress | None) -> None:
    first, last = host_bounds(net)
    for start, end in pools:
        if int(start) < first or int(end) > last:
            raise BadRequest(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {net}.",
                type="OutOfBoundsAllocationPool",
            )
    ordered = sorted(pools)
    for (a_start, a_end), (b_start, b_end) in itertools.pairwise(ordered):
        if b_start <= a_end:
            raise Conflict(
                f"Found overlapping allocation pools: {a_start}-{a_end} and {b_start}-{b_end} for subnet {net}.",
                type="OverlappingAllocationPools",
            )
    if gateway is not None:
        for start, end in pools:
            if start <= gateway <= end:
                raise Conflict(
                    f"Gateway ip {gateway} conflicts with allocation pool {start}-{end}.",
                    type="GatewayConflictWithAllocationPools",
                )


def pool_size(pools: list[tuple[str, str]]) -> int:
    return sum(int(ipaddress.ip_address(b)) - int(ipaddress.ip_address(a)) + 1 for a, b in pools)
