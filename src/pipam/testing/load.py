"""Client threads creating (and, with ``churn``, deleting) ports through servers until stopped.

Every request is recorded with its duration, whatever happened: an HTTP answer, a time-out, a reset
connection, a body that is not JSON. A test can then see a request that hung, not only slow ones,
and no thread dies silently: the load fails when one outlives the stop.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Answer:
    base: str  # the server asked
    op: str  # "create" or "delete"
    started: float  # time.monotonic() when the request was sent
    took: float
    status: int  # the HTTP status; 0 when no HTTP answer came
    detail: str  # create 201: the address; delete: the port id; a failed create: its error (as ``error``)
    extra: str = ""  # create 201: the new port's id; 503: the Retry-After header
    error: str = ""  # a failure: the NeutronError type, or the transport error when no answer came

    @property
    def answered(self) -> float:
        return self.started + self.took


class PortLoad:
    """With ``churn``, each thread deletes its own ports once it holds more than ``keep``, oldest first.
    A delete without a definite answer (503, a dropped connection) is sent again until it gets 204 or
    404 (404: an earlier attempt did commit), so at the end every port deleted is known to be gone."""

    def __init__(
        self,
        bases: list[str],
        network_id: str,
        per_base: int = 2,
        churn: bool = False,
        keep: int = 5,
        timeout: float = 30,
    ) -> None:
        self.answers: list[Answer] = []
        self.crashed: list[str] = []  # client threads that died of an exception, and why
        self.churn, self.keep, self.timeout = churn, keep, timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(base, network_id), daemon=True, name=f"load-{base}-{i}")
            for base in bases
            for i in range(per_base)
        ]

    # --- what happened ---------------------------------------------------------------------------

    @property
    def slowest(self) -> float:
        return max((a.took for a in self.answers), default=0.0)

    def creates(self, base: str | None = None) -> list[Answer]:
        return [a for a in self.answers if a.op == "create" and base in (None, a.base)]

    def created(self) -> list[Answer]:
        return [a for a in self.creates() if a.status == 201 and not a.error]

    def deleted(self) -> set[str]:
        """Ports whose deletion was confirmed (204, or 404 after an earlier unanswered attempt)."""
        return {a.detail for a in self.answers if a.op == "delete" and a.status in (204, 404)}

    def held(self) -> set[tuple[str, str]]:
        """(address, port id) of every port created and not deleted, by the answers clients saw."""
        gone = self.deleted()
        return {(a.detail, a.extra) for a in self.created() if a.extra not in gone}

    def window(self, start: float, end: float, base: str | None = None) -> Counter[int]:
        """Statuses of the requests (to one server, or all) sent between start and end."""
        return Counter(a.status for a in self.answers if start < a.started < end and base in (None, a.base))

    def double_allocations(self) -> list[str]:
        """Addresses handed to a second port while the first still held it: the first port's delete
        had not even been sent when the second port's 201 arrived."""
        first_delete: dict[str, float] = {}
        for a in self.answers:
            if a.op == "delete":
                first_delete[a.detail] = min(a.started, first_delete.get(a.detail, a.started))
        holders: dict[str, list[Answer]] = defaultdict(list)
        for a in self.created():
            holders[a.detail].append(a)
        bad = []
        for ip, events in holders.items():
            events.sort(key=lambda a: a.started)
            for earlier, later in itertools.pairwise(events):
                if first_delete.get(earlier.extra, float("inf")) > later.answered:
                    bad.append(f"{ip}: {earlier.extra} and {later.extra}")
        return bad

    # --- the clients -------------------------------------------------------------------------------

    def _send(self, client: httpx.Client, base: str, op: str, network_id: str, port_id: str = "") -> Answer:
        t0 = time.monotonic()
        try:
            if op == "create":
                r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
            else:
                r = client.delete(f"/v2.0/ports/{port_id}")
        except httpx.HTTPError as exc:
            failed = type(exc).__name__
            return Answer(base, op, t0, time.monotonic() - t0, 0, port_id or failed, error=failed)
        took = time.monotonic() - t0
        retry_after = r.headers.get("retry-after", "")
        if r.status_code in (201, 204):
            if op == "delete":
                return Answer(base, op, t0, took, 204, port_id)
            try:
                port = r.json()["port"]
                address = port["fixed_ips"][0]["ip_address"] if port["fixed_ips"] else ""
                return Answer(base, op, t0, took, 201, address, port["id"])
            except (ValueError, KeyError, IndexError, TypeError):
                # A 201 whose body is no port: recorded as such, not as a port the client holds.
                return Answer(base, op, t0, took, r.status_code, "not-a-port", error="not-a-port")
        try:
            body = r.json()
            error = body["NeutronError"]["type"]
        except (ValueError, KeyError, TypeError):
            error = "not-a-neutron-error"
        return Answer(base, op, t0, took, r.status_code, port_id or error, retry_after, error)

    def _record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def _run(self, base: str, network_id: str) -> None:
        try:
            self._loop(base, network_id)
        except BaseException as exc:  # recorded, and raised again when the load ends: no silent death
            with self.lock:
                self.crashed.append(f"{threading.current_thread().name}: {type(exc).__name__}: {exc}")

    def _loop(self, base: str, network_id: str) -> None:
        mine: list[str] = []
        with httpx.Client(base_url=base, timeout=self.timeout) as client:
            while not self.stop.is_set():
                if self.churn and len(mine) > self.keep:
                    answer = self._send(client, base, "delete", network_id, mine[0])
                    self._record(answer)
                    if answer.status in (204, 404):
                        mine.pop(0)
                    else:
                        time.sleep(0.05)
                    continue
                answer = self._send(client, base, "create", network_id)
                self._record(answer)
                if answer.status == 201 and not answer.error:
                    mine.append(answer.extra)
                else:
                    time.sleep(0.05)

    def __enter__(self) -> PortLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 30)
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError(f"client threads still running (a request hung past its time-out): {alive}")
        if self.crashed:
            raise AssertionError(f"client threads died without recording their request: {self.crashed}")


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
