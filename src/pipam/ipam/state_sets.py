"""Turning integer ranges into netaddr IP sets, the form in which backends' states are compared."""

from __future__ import annotations

from collections.abc import Iterable

import netaddr


def ipset_of_ranges(ranges: Iterable[tuple[int, int]], version: int) -> netaddr.IPSet:
    cidrs: list[netaddr.IPNetwork] = []
    for first, last in ranges:
        cidrs.extend(netaddr.iprange_to_cidrs(netaddr.IPAddress(first, version), netaddr.IPAddress(last, version)))
    return netaddr.IPSet(cidrs)
