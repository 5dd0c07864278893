"""The free-space check: what a backend would hand out against its pools minus the core's allocations.

A backend's free space decides the next allocation, so a free range that covers an allocated address
hands out an address a port holds, and a pool address that is neither free nor allocated is never
handed out again. Everything here works on inclusive integer ranges ordered by first address (an
allocation is a one-address range): each step is a linear sweep, and an IPv6 pool costs what its
ranges cost, never what its addresses number.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import netaddr

from pipam.ipam.addr import int_to_ip
from pipam.ipam.free_ranges import subtract
from pipam.ipam.interface import FreeProbe, FreeRanges, FreeSpace, FreeSpaceCheck, IpamDriver, SubnetState
from pipam.migration.compare import Comparison, Difference

Interval = tuple[int, int]

OVERLAP = "free_space_overlap"  # two free ranges cover the same addresses: each could be handed out twice
OUTSIDE_POOLS = "free_space_outside_pools"  # free addresses outside every allocation pool
ALLOCATED = "free_space_allocated"  # free addresses that the core tables say a port holds
MISSING = "free_space_missing"  # pool addresses neither allocated nor free: never handed out again

_MEANING = {
    OVERLAP: "is covered by more than one free range (could be handed out twice)",
    OUTSIDE_POOLS: "is free but outside every allocation pool",
    ALLOCATED: "is free but allocated in the core tables (would be handed out while a port holds it)",
    MISSING: "is in an allocation pool and not allocated, but not free (would never be handed out)",
}


@dataclass(frozen=True)
class Problem:
    kind: str
    first: int
    last: int


def check_of(driver: IpamDriver | type[IpamDriver]) -> FreeSpaceCheck:
    """How this driver's free space is checked; a driver that does not say is not checked."""
    check = getattr(driver, "free_space_check", "none")
    return check if check in ("ranges", "probe") else "none"


def read_free_space(driver: IpamDriver, subnet_ids: Sequence[str]) -> dict[str, FreeSpace]:
    return driver.free_space(subnet_ids) if check_of(driver) != "none" and subnet_ids else {}


# --- interval arithmetic ------------------------------------------------------------------------


def merge(ranges: Sequence[Interval]) -> tuple[list[Interval], list[Interval]]:
    """Ranges ordered by first address -> (their union, adjacent runs joined; the parts covered twice)."""
    union: list[Interval] = []
    twice: list[Interval] = []
    for first, last in ranges:
        if union and first <= union[-1][1] + 1:
            top_first, top_last = union[-1]
            if first <= top_last:
                twice.append((first, min(last, top_last)))
            union[-1] = (top_first, max(top_last, last))
        else:
            union.append((first, last))
    return union, merge(twice)[0] if twice else []


def points(values: Sequence[int]) -> list[Interval]:
    return [(v, v) for v in values]


def pools_minus(pools: Sequence[Interval], allocated: Sequence[int]) -> list[Interval]:
    """What should be free: ordered pools minus ordered allocated addresses, in one sweep over both.
    The result is disjoint and, with pools merged first, never adjacent: ``merge`` leaves it as it is."""
    out: list[Interval] = []
    i, n = 0, len(allocated)
    for first, last in merge(pools)[0]:
        while i < n and allocated[i] < first:
            i += 1
        start = first
        while i < n and allocated[i] <= last:
            if allocated[i] > start:
                out.append((start, allocated[i] - 1))
            start = max(start, allocated[i] + 1)
            i += 1
        if start <= last:
            out.append((start, last))
    return out


# --- the checks -----------------------------------------------------------------------------------


def check_ranges(
    pools: Sequence[Interval], allocated: Sequence[int], stored: Sequence[Interval], pending: Sequence[Interval] = ()
) -> list[Problem]:
    """Stored free ranges against pools minus allocations (all ordered); ``pending`` addresses are left out."""
    expected = pools_minus(pools, allocated)
    union, twice = merge(stored)
    if union == expected and not twice:
        return []  # the common case: one sweep each way and an equality
    extra = subtract(union, expected)
    outside = subtract(extra, pools)
    found = [
        (OVERLAP, twice),
        (OUTSIDE_POOLS, outside),
        (ALLOCATED, subtract(extra, outside)),  # free inside a pool but not expected: allocated addresses
        (MISSING, subtract(expected, union)),
    ]
    return [Problem(kind, a, b) for kind, ranges in found for a, b in subtract(ranges, pending)]


def check_probe(
    pools: Sequence[Interval],
    allocated: Sequence[int],
    offered: int | None,
    pending: Sequence[Interval] = (),
    shared: bool = False,
) -> list[Problem]:
    """The address a backend would hand out next: in a pool and not allocated. None (nothing free) is
    wrong only for a backend no one else uses: in a shared one, other systems may hold the rest."""
    if offered is None:
        if shared:
            return []
        free = subtract(pools_minus(pools, allocated), pending)
        return [Problem(MISSING, a, b) for a, b in free]
    if any(a <= offered <= b for a, b in pending):
        return []
    if not any(a <= offered <= b for a, b in pools):
        return [Problem(OUTSIDE_POOLS, offered, offered)]
    i = bisect.bisect_left(allocated, offered)
    if i < len(allocated) and allocated[i] == offered:
        return [Problem(ALLOCATED, offered, offered)]
    return []


# --- recording differences ------------------------------------------------------------------------


def as_intervals(ipset: netaddr.IPSet | None) -> list[Interval]:
    return [] if not ipset else [(r.first, r.last) for r in ipset.iter_ipranges()]


def compare_free_space(
    result: Comparison,
    backend: SubnetState,
    allocated: Sequence[int],
    answer: FreeSpace | None,
    pending: netaddr.IPSet | None = None,
    shared: bool = False,
) -> None:
    """Record the free-space differences of one subnet the backend holds: its free space against its
    own pools minus ``allocated`` (the core's allocations, ordered)."""
    version = ipaddress.ip_network(backend.cidr).version
    pools = sorted((int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))) for a, b in backend.pools)
    masked = as_intervals(pending)
    if isinstance(answer, FreeProbe):
        offered = None if answer.address is None else int(ipaddress.ip_address(answer.address))
        problems = check_probe(pools, allocated, offered, masked, shared)
    else:  # a held subnet left unanswered has nothing free
        stored = answer.ranges if isinstance(answer, FreeRanges) else []
        problems = check_ranges(pools, allocated, stored, masked)
    result.free_space["subnets_checked"] += 1
    if problems:
        result.free_space_subnets.add(backend.subnet_id)
        result.free_space["differences"] += len(problems)
    for p in problems:
        first, last = str(int_to_ip(p.first, version)), str(int_to_ip(p.last, version))
        shown = first if first == last else f"{first}-{last}"
        result.add(
            Difference(
                backend.subnet_id,
                p.kind,
                f"{shown} of {backend.cidr} {_MEANING[p.kind]}",
                (first, last),
            )
        )
