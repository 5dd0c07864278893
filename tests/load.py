"""Client threads creating (and optionally deleting) ports through servers until stopped, keeping every
answer."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from typing import NamedTuple

import httpx


class Delete(NamedTuple):
    started: float
    answered: float
    status: int
    port_id: str
    base: str


class PortLoad:
    """Each create answer is (start time, status, address or error type, port id or Retry-After); the
    same tuples per server in ``by_base``.

    With ``churn``, each thread also deletes its own ports once it holds more than ``keep``, oldest
    first. A delete that gets no definite answer (503, a dropped connection) is sent again until it
    gets 204 or 404 (404: an earlier attempt did commit), so that at the end every port a thread
    deleted is known to be gone; ``deletes`` has every attempt."""

    def __init__(
        self, bases: list[str], network_id: str, per_base: int = 2, churn: bool = False, keep: int = 5
    ) -> None:
        self.answers: list[tuple[float, int, str, str]] = []
        self.by_base: dict[str, list[tuple[float, int, str, str]]] = defaultdict(list)
        self.deletes: list[Delete] = []
        self.answered: dict[str, float] = {}  # port id -> when its 201 arrived
        self.slowest = 0.0
        self.churn = churn
        self.keep = keep
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(base, network_id), daemon=True)
            for base in bases
            for _ in range(per_base)
        ]

    def _run(self, base: str, network_id: str) -> None:
        mine: list[str] = []
        with httpx.Client(base_url=base, timeout=30) as client:
            while not self.stop.is_set():
                if self.churn and len(mine) > self.keep:
                    if self._delete(client, base, mine[0]):
                        mine.pop(0)
                    continue
                t0 = time.monotonic()
                try:
                    r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                except httpx.HTTPError:  # a server being restarted
                    time.sleep(0.05)
                    continue
                t1 = time.monotonic()
                body = r.json()
                if r.status_code == 201:
                    entry = (t0, 201, body["port"]["fixed_ips"][0]["ip_address"], body["port"]["id"])
                    mine.append(body["port"]["id"])
                else:
                    entry = (t0, r.status_code, body["NeutronError"]["type"], r.headers.get("retry-after", ""))
                with self.lock:
                    self.answers.append(entry)
                    self.by_base[base].append(entry)
                    if r.status_code == 201:
                        self.answered[entry[3]] = t1
                    self.slowest = max(self.slowest, t1 - t0)
                if r.status_code != 201:
                    time.sleep(0.05)

    def _delete(self, client: httpx.Client, base: str, port_id: str) -> bool:
        """One delete attempt; True once the port is known to be gone."""
        t0 = time.monotonic()
        try:
            status = client.delete(f"/v2.0/ports/{port_id}").status_code
        except httpx.HTTPError:
            status = 0  # no answer: the delete may or may not have committed
        t1 = time.monotonic()
        with self.lock:
            self.deletes.append(Delete(t0, t1, status, port_id, base))
            self.slowest = max(self.slowest, t1 - t0)
        if status in (204, 404):
            return True
        time.sleep(0.05)
        return False

    def window(self, start: float, end: float, base: str | None = None) -> Counter[int]:
        """Statuses of the creates and deletes (of one server, or all) sent between start and end."""
        creates = self.by_base[base] if base is not None else self.answers
        found = Counter(s for t, s, _, _ in creates if start < t < end)
        found.update(d.status for d in self.deletes if start < d.started < end and base in (None, d.base))
        return found

    def deleted(self) -> set[str]:
        """Ports whose deletion was confirmed (204, or 404 after an earlier unanswered attempt)."""
        return {d.port_id for d in self.deletes if d.status in (204, 404)}

    def double_allocations(self) -> list[str]:
        """Addresses handed to a second port while the first still held it: the first port's delete
        had not even been sent when the second port's 201 arrived."""
        first_delete: dict[str, float] = {}
        for d in self.deletes:
            first_delete[d.port_id] = min(d.started, first_delete.get(d.port_id, d.started))
        holders: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for t0, status, ip, port_id in self.answers:
            if status == 201:
                holders[ip].append((t0, port_id))
        bad = []
        for ip, events in holders.items():
            events.sort()
            for (_, earlier), (_, later) in itertools.pairwise(events):
                if first_delete.get(earlier, float("inf")) > self.answered[later]:
                    bad.append(f"{ip}: {earlier} and {later}")
        return bad

    def __enter__(self) -> PortLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def make_subnet(base: str, cidr: str = "10.60.0.0/16") -> tuple[str, str]:
    """A new network with one IPv4 subnet, through the server at ``base``: (network id, subnet id)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        n = client.post("/v2.0/networks", json={"network": {"name": "n"}})
        assert n.status_code == 201, n.text
        network_id = n.json()["network"]["id"]
        s = client.post("/v2.0/subnets", json={"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": 4}})
        assert s.status_code == 201, s.text
    return network_id, s.json()["subnet"]["id"]


def port_in_subnet(client: httpx.Client, network_id: str, subnet_id: str) -> str | None:
    """Create a port on the network; None when it got an address of ``subnet_id``, else what went wrong
    (a 404 for the network, or a port without address: both mean the node read an old state)."""
    r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
    fixed = r.json().get("port", {}).get("fixed_ips", []) if r.status_code == 201 else []
    if r.status_code == 201 and [f["subnet_id"] for f in fixed] == [subnet_id]:
        return None
    return f"{r.status_code} fixed_ips={fixed} {r.text[:120]}"
