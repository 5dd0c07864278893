"""Allocation pools of a subnet: defaults and the checks DESIGN.md lists."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from pipam.errors import (
    GatewayConflictWithAllocationPools,
    InvalidAllocationPool,
    OutOfBoundsAllocationPool,
    OverlappingAllocationPools,
)
from pipam.ipam.addr import IPAddress, IPNetwork, host_bounds, int_to_ip
from pipam.ipam.interface import Pool


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[Pool]:
    """The whole host range minus the gateway (one or two pools)."""
    first, last = host_bounds(net)
    runs: list[tuple[int, int]] = [(first, last)]
    if gateway is not None and first <= int(gateway) <= last:
        g = int(gateway)
        runs = [(a, b) for a, b in ((first, g - 1), (g + 1, last)) if a <= b]
    return [(int_to_ip(a, net.version), int_to_ip(b, net.version)) for a, b in runs]


def pools_of(value: Sequence[dict[str, Any]], net: IPNetwork) -> list[Pool]:
    """Validated ``{start, end}`` entries (addresses already parsed) as pools of ``net``'s version."""
    pools: list[Pool] = []
    for item in value:
        start, end = item["start"], item["end"]
        if start.version != net.version or end.version != net.version or start > end:
            raise InvalidAllocationPool(f"The allocation pool {start}-{end} is not valid.")
        pools.append((start, end))
    return pools


def validate_pools(pools: list[Pool], net: IPNetwork, gateway: IPAddress | None) -> None:
    first, last = host_bounds(net)
    for start, end in pools:
        if int(start) < first or int(end) > last:
            raise OutOfBoundsAllocationPool(f"The allocation pool {start}-{end} spans beyond the subnet cidr {net}.")
    ordered = sorted(pools)
    for (a_start, a_end), (b_start, b_end) in itertools.pairwise(ordered):
        if b_start <= a_end:
            raise OverlappingAllocationPools(
                f"Found overlapping allocation pools: {a_start}-{a_end} and {b_start}-{b_end} for subnet {net}."
            )
    if gateway is not None:
        for start, end in pools:
            if start <= gateway <= end:
                raise GatewayConflictWithAllocationPools(
                    f"Gateway ip {gateway} conflicts with allocation pool {start}-{end}."
                )
