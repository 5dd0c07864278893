"""Comparing a backend's state with the core tables: differences, counts and a checksum."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import netaddr

from pipam.ipam.interface import SubnetState

MAX_LISTED = 1000  # differences listed one by one; beyond that only counted


@dataclass
class Difference:
    subnet_id: str
    # missing_subnet, extra_subnet, cidr, pools, missing_allocations, extra_allocations, and the
    # free-space kinds of pipam.migration.free_space (free_space_*)
    kind: str
    detail: str
    range: tuple[str, str] | None = None  # first and last address, for the free-space kinds

    def as_dict(self) -> dict[str, Any]:
        span = None if self.range is None else {"first": self.range[0], "last": self.range[1]}
        return {"subnet_id": self.subnet_id, "kind": self.kind, "detail": self.detail, "range": span}


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    difference_count: int = 0
    core: dict[str, int] = field(default_factory=lambda: {"subnets": 0, "pools": 0, "allocations": 0})
    backend: dict[str, int] = field(default_factory=lambda: {"subnets": 0, "pools": 0, "allocations": 0})
    # How the backend's free space was checked ("ranges", "probe" or "none": not applicable) and over
    # how many subnets; the subnets whose free space differs (what ``pipam ipam repair`` rebuilds).
    free_space: dict[str, Any] = field(
        default_factory=lambda: {"check": "none", "subnets_checked": 0, "differences": 0}
    )
    free_space_subnets: set[str] = field(default_factory=set)
    _core_hash: Any = field(default_factory=hashlib.sha256)
    _backend_hash: Any = field(default_factory=hashlib.sha256)

    @property
    def clean(self) -> bool:
        return self.difference_count == 0

    def add(self, diff: Difference) -> None:
        self.difference_count += 1
        if len(self.differences) < MAX_LISTED:
            self.differences.append(diff)

    def account(self, side: str, state: SubnetState) -> None:
        counts = self.core if side == "core" else self.backend
        counts["subnets"] += 1
        counts["pools"] += len(state.pools)
        counts["allocations"] += state.allocations.size
        digest = self._core_hash if side == "core" else self._backend_hash
        digest.update(canonical(state).encode())

    def checksums(self) -> dict[str, str]:
        return {"core": self._core_hash.hexdigest()[:16], "backend": self._backend_hash.hexdigest()[:16]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "difference_count": self.difference_count,
            "differences": [d.as_dict() for d in self.differences],
            "core": self.core,
            "backend": self.backend,
            "free_space": {**self.free_space, "subnets_differing": len(self.free_space_subnets)},
            "checksum": self.checksums(),
        }


def canonical(state: SubnetState) -> str:
    pools = ",".join(f"{a}-{b}" for a, b in sorted(state.pools, key=lambda p: netaddr.IPAddress(p[0])))
    allocs = ",".join(str(c) for c in state.allocations.iter_cidrs())
    return f"{state.subnet_id}|{state.cidr}|{pools}|{allocs}\n"


def describe(ipset: netaddr.IPSet, limit: int = 20) -> str:
    ranges = list(ipset.iter_ipranges())
    shown = [str(r[0]) if r.size == 1 else f"{r[0]}-{r[-1]}" for r in ranges[:limit]]
    more = f" (+{len(ranges) - limit} more ranges)" if len(ranges) > limit else ""
    return f"{ipset.size} address(es): {', '.join(shown)}{more}"


def compare_subnet(
    result: Comparison,
    core: SubnetState | None,
    backend: SubnetState | None,
    pending: netaddr.IPSet | None = None,
) -> None:
    """Record the differences of one subnet. ``pending``: addresses changed since the backend last
    caught up (a migration's journal), compared later, under the fence."""
    if pending:
        core = _without(core, pending)
        backend = _without(backend, pending)
    if core is not None:
        result.account("core", core)
    if backend is not None:
        result.account("backend", backend)
    if core is None and backend is not None:
        result.add(
            Difference(
                backend.subnet_id,
                "extra_subnet",
                f"backend holds subnet {backend.cidr or '?'} "
                f"that the core tables do not have ({backend.allocations.size} allocations)",
            )
        )
        return
    if backend is None:
        assert core is not None
        result.add(Difference(core.subnet_id, "missing_subnet", f"backend does not hold subnet {core.cidr}"))
        return
    assert core is not None
    if core.cidr != backend.cidr:
        result.add(Difference(core.subnet_id, "cidr", f"core {core.cidr}, backend {backend.cidr}"))
    if sorted(core.pools) != sorted(backend.pools):
        result.add(Difference(core.subnet_id, "pools", f"core {core.pools}, backend {backend.pools}"))
    missing = core.allocations - backend.allocations
    extra = backend.allocations - core.allocations
    if missing:
        result.add(
            Difference(
                core.subnet_id, "missing_allocations", f"allocated in core but free in backend: {describe(missing)}"
            )
        )
    if extra:
        result.add(
            Difference(
                core.subnet_id, "extra_allocations", f"held by backend but not allocated in core: {describe(extra)}"
            )
        )


def _without(state: SubnetState | None, addresses: netaddr.IPSet) -> SubnetState | None:
    if state is None:
        return None
    return SubnetState(state.subnet_id, state.cidr, state.pools, state.allocations - addresses)
