"""Client threads creating ports through a server until stopped, keeping every answer."""

from __future__ import annotations

import threading
import time

import httpx


class PortLoad:
    """Each answer is (start time, status, address or error type, port id or Retry-After)."""

    def __init__(self, bases: list[str], network_id: str, per_base: int = 2) -> None:
        self.answers: list[tuple[float, int, str, str]] = []
        self.slowest = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(base, network_id), daemon=True)
            for base in bases
            for _ in range(per_base)
        ]

    def _run(self, base: str, network_id: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                except httpx.HTTPError:  # a server being restarted
                    time.sleep(0.05)
                    continue
                took = time.monotonic() - t0
                body = r.json()
                if r.status_code == 201:
                    entry = (t0, 201, body["port"]["fixed_ips"][0]["ip_address"], body["port"]["id"])
                else:
                    entry = (t0, r.status_code, body["NeutronError"]["type"], r.headers.get("retry-after", ""))
                with self.lock:
                    self.answers.append(entry)
                    self.slowest = max(self.slowest, took)
                if r.status_code != 201:
                    time.sleep(0.05)

    def __enter__(self) -> PortLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
