"""A PostgreSQL cluster of the test's own, so that it can be stopped, restarted and have its backends
killed without disturbing tests that share the machine's server; and a primary with a streaming
standby (``PostgresPair``) for failover tests."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.server import free_port


class PrivatePostgres:
    """One server. ``standby_of`` makes it a streaming standby of that server (``pg_basebackup -R``)
    instead of a new cluster; ``name`` is its ``cluster_name``, which a standby also sends as its
    application name (what ``synchronous_standby_names`` on the primary refers to)."""

    def __init__(self, standby_of: PrivatePostgres | None = None, name: str = "pipam") -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins or shutil.which("runuser") is None or os.geteuid() != 0:
            reason = "a private PostgreSQL needs the server binaries and root (to run them as user postgres)"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        self.bin = Path(bins[-1])
        self.name = name
        # Not under pytest's tmp_path: that tree is private to root, and the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="pipam-pg-"))
        self.dir = self.base / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run(["chown", "postgres", str(self.base)], check=True)
        try:
            if standby_of is None:
                self._as_postgres(str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres")
            else:
                # -R writes primary_conninfo and standby.signal: the copy starts as a standby streaming
                # from the primary. -X stream takes the WAL written during the copy along.
                self._as_postgres(
                    str(self.bin / "pg_basebackup"),
                    *("-D", str(self.dir), "-h", "127.0.0.1", "-p", str(standby_of.port), "-U", "postgres"),
                    *("-R", "-X", "stream", "-c", "fast"),
                )
            self.start()
        except BaseException:
            self.destroy()
            raise

    def _as_postgres(self, *cmd: str) -> str:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr}")
        return done.stdout

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c cluster_name={self.name}"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.dir), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop")

    def sql(self, query: str) -> str:
        """Run one statement through psql as postgres; its unaligned output."""
        return self._as_postgres(
            str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-XAtc", query
        ).strip()

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started: a crash of the machine, not a shutdown
        (no checkpoint, client connections and the WAL sender cut at once)."""
        pid_file = self.dir / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        # Each child calls setsid(), so there is no process group to kill at once. Freeze the
        # postmaster first: a backend it forked between listing its children and killing them
        # would survive it and keep committing for its client (seen: a 201 after the "crash").
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _state(pid) not in ("T", "t", "Z", ""):
            time.sleep(0.01)
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        for p in [*map(int, children.split()), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _state(pid) != "":
            time.sleep(0.05)

    def promote(self) -> None:
        """Make this standby a primary (waits until it accepts writes)."""
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-w", "promote")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        self.kill()  # a server that failed to stop, or was killed and left children
        shutil.rmtree(self.base, ignore_errors=True)


def _state(pid: int) -> str:
    """The state letter of a process ("T" stopped, "Z" zombie...), "" when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


class PostgresPair:
    """A primary and one streaming standby on free ports; ``url`` names both hosts and asks for the
    one that accepts writes, so that clients follow a promotion without being reconfigured.

    With ``synchronous``, the primary acknowledges a commit only once the standby has it on disk
    (``synchronous_standby_names``), so a promotion loses no acknowledged commit."""

    def __init__(self, synchronous: bool = False) -> None:
        self.primary = PrivatePostgres(name="pipam_primary")
        self.standby: PrivatePostgres | None = None
        try:
            self.standby = PrivatePostgres(standby_of=self.primary, name="pipam_standby")
            if synchronous:
                # Set on the primary after the base backup, so that the standby does not inherit it:
                # once promoted it has no standby of its own, and would wait for one at every commit.
                self.primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'pipam_standby'")
                self.primary.sql("SELECT pg_reload_conf()")
            self.wait_streaming("sync" if synchronous else "async")
        except BaseException:
            self.destroy()
            raise
        self.synchronous = synchronous
        hosts = "&".join(f"host=127.0.0.1:{s.port}" for s in (self.primary, self.standby))
        # SQLAlchemy's form for several hosts (one host=H:P per host); psycopg hands libpq the lists
        # host=H1,H2 port=P1,P2, and libpq skips a host that refuses or is read-only.
        self.url = f"postgresql+psycopg://postgres@/postgres?{hosts}&target_session_attrs=read-write"

    def wait_streaming(self, sync_state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.primary.sql(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pipam_standby' "
                "AND state = 'streaming'"
            )
            if state == sync_state:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby not streaming ({sync_state}) after {timeout} s: {state!r}")
            time.sleep(0.1)

    def kill_primary(self) -> None:
        self.primary.kill()

    def promote(self) -> float:
        """Promote the standby; returns the seconds ``pg_ctl promote`` took."""
        assert self.standby is not None
        started = time.monotonic()
        self.standby.promote()
        return time.monotonic() - started

    def destroy(self) -> None:
        if self.standby is not None:
            self.standby.destroy()
        self.primary.destroy()
