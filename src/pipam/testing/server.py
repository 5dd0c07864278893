"""Run a real ``pipam serve`` process, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PIPAM = str(Path(sys.executable).with_name("pipam"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self, url: str, driver: str, log_path: Path, command: list[str] | None = None, **settings: str
    ) -> None:
        """``command`` replaces ``pipam`` (a wrapper that patches something first, say); ``serve --port
        P`` is appended to it."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": driver, "PIPAM_LOG_LEVEL": "WARNING"}
        # Without this a port of the parent's choosing would be overridden by a PIPAM_PORT in the environment.
        env.pop("PIPAM_PORT", None)
        env.pop("PIPAM_CONFIG", None)
        env.update({f"PIPAM_{k.upper()}": v for k, v in settings.items()})
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [*(command or [PIPAM]), "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pipam serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("pipam serve did not start in 30 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
