"""Client threads creating (and optionally deleting) ports through servers until stopped.

Every request is recorded with its duration, whatever happened: an HTTP answer, a time-out, a reset
connection, a body that is not JSON. A test can then see a request that hung, not only slow ones.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the request was sent
    took: float
    op: str  # "create" or "delete"
    status: int  # the HTTP status; 0 when no HTTP answer came
    detail: str  # 201: the address; 204: the port id; errors: the NeutronError type or the transport error
    extra: str = ""  # 201: the new port's id; 503: the Retry-After header


class PortLoad:
    def __init__(
        self,
        bases: list[str],
        network_id: str,
        per_base: int = 2,
        delete_share: float = 0.0,
        timeout: float = 30,
    ) -> None:
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.delete_share = delete_share
        self.timeout = timeout
        self.threads = [
            threading.Thread(target=self._run, args=(base, network_id, i), daemon=True)
            for base in bases
            for i in range(per_base)
        ]

    @property
    def slowest(self) -> float:
        return max((a.took for a in self.answers), default=0.0)

    def created(self) -> list[Answer]:
        return [a for a in self.answers if a.op == "create" and a.status == 201]

    def held(self) -> set[tuple[str, str]]:
        """(address, port id) of every port created and not deleted, by the answers clients saw."""
        deleted = {a.detail for a in self.answers if a.op == "delete" and a.status == 204}
        return {(a.detail, a.extra) for a in self.created() if a.extra not in deleted}

    def _record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def _send(self, client: httpx.Client, op: str, port_id: str, network_id: str) -> Answer:
        t0 = time.monotonic()
        try:
            if op == "create":
                r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
            else:
                r = client.delete(f"/v2.0/ports/{port_id}")
        except httpx.HTTPError as exc:
            return Answer(t0, time.monotonic() - t0, op, 0, type(exc).__name__)
        took = time.monotonic() - t0
        if r.status_code == 204:
            return Answer(t0, took, op, 204, port_id)
        try:
            body = r.json()
        except ValueError:
            return Answer(t0, took, op, r.status_code, "not-json", r.text[:200])
        if r.status_code == 201:
            port = body["port"]
            return Answer(t0, took, op, 201, port["fixed_ips"][0]["ip_address"], port["id"])
        error = body.get("NeutronError", {}) if isinstance(body, dict) else {}
        return Answer(
            t0, took, op, r.status_code, error.get("type", "not-neutron-error"), r.headers.get("retry-after", "")
        )

    def _run(self, base: str, network_id: str, seed: int) -> None:
        rnd = random.Random(seed)
        mine: list[str] = []
        with httpx.Client(base_url=base, timeout=self.timeout) as client:
            while not self.stop.is_set():
                deleting = bool(mine) and rnd.random() < self.delete_share
                port_id = mine.pop(rnd.randrange(len(mine))) if deleting else ""
                answer = self._send(client, "delete" if deleting else "create", port_id, network_id)
                self._record(answer)
                if answer.op == "create" and answer.status == 201:
                    mine.append(answer.extra)
                elif answer.op == "delete" and answer.status != 204:
                    mine.append(port_id)  # not deleted: it may still exist
                if answer.status not in (201, 204):
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
