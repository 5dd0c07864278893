"""A private MariaDB Galera cluster: N ``mariadbd`` processes on free ports under a temporary directory,
so that tests can kill nodes, lose quorum and bring nodes back without touching the machine's MariaDB.

Only node 1 gets a freshly installed datadir; it bootstraps the cluster (``--wsrep-new-cluster``) and
the others join with an empty datadir and receive a full copy by rsync (SST). A node killed with
SIGKILL comes back like a crashed server would: ``--wsrep-recover`` reads the last committed position
from InnoDB, and the node restarts from there, receiving only the missed write sets (IST).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


_taken: set[int] = set()


def listen_port() -> int:
    """A free port below the ephemeral range, never handed out twice by this process.

    The nodes bind their ports seconds after they are chosen (the SST and IST ports only when a
    transfer starts): a port from the ephemeral range could meanwhile become the local end of some
    outgoing connection on this busy machine, and the rsync daemon then fails to start (seen:
    "rsync daemon terminated unexpectedly", the joiner aborts)."""
    low, _ = _ephemeral_range()
    for _ in range(1000):
        port = random.randint(10000, max(10001, low - 1))
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port found below the ephemeral range")


PROVIDERS = [
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/galera-4/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
]
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def galera_missing() -> str | None:
    """Why a private Galera cluster cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a private Galera cluster needs root (to run mariadbd as user mysql)"
    if not any(Path(p).exists() for p in PROVIDERS):
        return "a private Galera cluster needs the galera-4 package (libgalera_smm.so)"
    for tool in (MARIADBD, INSTALL_DB, "rsync", "wsrep_sst_rsync", "ss"):
        if shutil.which(tool) is None and not Path(tool).exists():
            return f"a private Galera cluster needs {tool} (packages mariadb-server, rsync, iproute2)"
    return None


def skip_or_fail(reason: str) -> None:
    # Under CI a cluster that cannot start must not turn the Galera tests into a silent skip.
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Node:
    index: int
    dir: Path
    port: int = field(default_factory=listen_port)
    gcomm_port: int = field(default_factory=listen_port)
    ist_port: int = field(default_factory=listen_port)
    sst_port: int = field(default_factory=listen_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed: bool = False  # stopped on purpose: not running is expected

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def cnf(self) -> Path:
        return self.dir / "my.cnf"

    @property
    def log(self) -> Path:
        return self.dir / "mariadbd.log"

    @property
    def tmpdir(self) -> Path:
        # A mariadbd that starts deletes every "#sql*" file in its tmpdir: with the default /tmp, a
        # server starting elsewhere on the machine can delete the temporary tables of this one's
        # bootstrap (mariadb-install-db then fails on "Unknown table 'mysql.tmp_user_sys'").
        return self.dir / "tmp"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class GaleraCluster:
    """``size`` Galera nodes on 127.0.0.1; nodes are numbered from 1 as in ``url(1)``."""

    def __init__(self, size: int = 3, timeout: float = 120) -> None:
        reason = galera_missing()
        if reason:
            skip_or_fail(reason)
        self.size = size
        self.timeout = timeout
        self.provider = next(p for p in PROVIDERS if Path(p).exists())
        self.name = f"pipam-{uuid.uuid4().hex[:8]}"
        # Not under pytest's tmp_path: mariadbd drops to user mysql and must own its files.
        self.base = Path(tempfile.mkdtemp(prefix="pipam-galera-"))
        self.nodes = [Node(i, self.base / f"node{i}") for i in range(1, size + 1)]
        self.startup_seconds = 0.0
        try:
            started = time.monotonic()
            self._create()
            self.startup_seconds = time.monotonic() - started
        except BaseException:
            self.destroy()
            raise

    # -- set-up ---------------------------------------------------------------------------------------

    def _create(self) -> None:
        for node in self.nodes:
            node.datadir.mkdir(parents=True)
            node.tmpdir.mkdir()
            node.cnf.write_text(self._config(node))
        subprocess.run(["chown", "-R", "mysql:mysql", str(self.base)], check=True)
        first = self.nodes[0]
        done = subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={first.datadir}",
                f"--tmpdir={first.tmpdir}",  # passed on to the bootstrap mariadbd
                "--user=mysql",
                # root without password from 127.0.0.1 too (the default is unix-socket login only).
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout}{done.stderr}")
        self._spawn(first, "--wsrep-new-cluster")
        self._wait_node(first)
        # The joiners start together; the donor serves one SST at a time, the other retries until
        # it gets its turn, which still beats starting them one after the other.
        for node in self.nodes[1:]:
            self._spawn(node)
        self.wait_synced()

    def _config(self, node: Node) -> str:
        peers = ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self.nodes)
        provider_options = "; ".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port}",
                # Set explicitly: the default is the gcomm port + 1, which may be another node's port.
                f"ist.recv_addr=127.0.0.1:{node.ist_port}",
                "gcache.size=64M",
                # How long a causal read waits for a node that is behind before failing (1205); the
                # default 30 s would make the test of a lagging node needlessly long.
                "repl.causal_read_timeout=PT5S",
            ]
        )
        return f"""[mysqld]
user = mysql
datadir = {node.datadir}
tmpdir = {node.tmpdir}
socket = {node.dir}/mysqld.sock
pid-file = {node.dir}/mysqld.pid
port = {node.port}
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
default-storage-engine = InnoDB
binlog_format = ROW
innodb_autoinc_lock_mode = 2
# Test-sized: small buffers and logs make the rsync state transfers quick.
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
# 2: each commit is written to the OS at once (fsync'ed once a second), so a node killed with SIGKILL
# keeps every commit it acknowledged. With 0 it lost up to its last second, and when two of three nodes
# die together nothing else may hold those commits (docs/deployment.md, "Durability").
innodb_flush_log_at_trx_commit = 2
max_connections = 300
wsrep_on = ON
wsrep_provider = {self.provider}
wsrep_cluster_name = {self.name}
wsrep_cluster_address = gcomm://{peers}
wsrep_node_name = node{node.index}
wsrep_node_address = 127.0.0.1:{node.gcomm_port}
wsrep_node_incoming_address = 127.0.0.1:{node.port}
wsrep_provider_options = "{provider_options}"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:{node.sst_port}
"""

    def _spawn(self, node: Node, *extra: str) -> None:
        log = open(node.log, "ab")  # noqa: SIM115  (the child holds its own copy; ours closes below)
        try:
            node.proc = subprocess.Popen(
                [MARIADBD, f"--defaults-file={node.cnf}", *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                # A process group of its own, so that kill() also takes down the SST helpers
                # (rsync daemons, wsrep_sst_rsync) the node started, as a crashed machine would.
                start_new_session=True,
            )
        finally:
            log.close()
        node.starts += 1

    # -- queries ----------------------------------------------------------------------------------

    def url(self, node: int, database: str = "") -> str:
        """SQLAlchemy URL of node ``node`` (from 1)."""
        return f"mysql+pymysql://root@127.0.0.1:{self.nodes[node - 1].port}/{database}"

    def connect(self, node: int, database: str | None = None, timeout: int = 5) -> pymysql.Connection:  # type: ignore[type-arg]
        return pymysql.connect(
            host="127.0.0.1",
            port=self.nodes[node - 1].port,
            user="root",
            database=database,
            connect_timeout=timeout,
            read_timeout=timeout,
            autocommit=True,
        )

    def status(self, node: int) -> dict[str, str]:
        """wsrep status variables of one node (raises when it does not answer)."""
        with self.connect(node) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
            return {k: v for k, v in cur.fetchall()}

    def synced(self, node: int) -> bool:
        try:
            s = self.status(node)
        except pymysql.Error:
            return False
        return (
            s.get("wsrep_local_state_comment") == "Synced"
            and s.get("wsrep_cluster_status") == "Primary"
            and s.get("wsrep_ready") == "ON"
        )

    def alive_nodes(self) -> list[int]:
        return [n.index for n in self.nodes if n.alive]

    def _check_running(self, node: Node) -> None:
        if not node.alive:
            tail = node.log.read_text(errors="replace")[-3000:] if node.log.exists() else ""
            raise RuntimeError(f"galera node {node.index} exited: {tail}")

    def _wait_node(self, node: Node) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._check_running(node)
            if self.synced(node.index):
                return
            time.sleep(0.2)
        raise RuntimeError(f"galera node {node.index} not Synced after {self.timeout} s")

    def wait_synced(self, timeout: float | None = None) -> float:
        """Wait until every running node is Synced in one Primary component of all running nodes;
        returns the seconds waited."""
        started = time.monotonic()
        deadline = started + (timeout or self.timeout)
        while True:
            for node in self.nodes:
                if not node.killed:
                    self._check_running(node)
            running = [n for n in self.nodes if n.alive]
            ok = bool(running) and all(self.synced(n.index) for n in running)
            if ok:
                sizes = {self.status(n.index).get("wsrep_cluster_size") for n in running}
                if sizes == {str(len(running))}:
                    return time.monotonic() - started
            if time.monotonic() > deadline:
                states = {n.index: self._state_of(n.index) for n in running}
                raise RuntimeError(f"galera cluster not synced after {timeout or self.timeout} s: {states}")
            time.sleep(0.2)

    def _state_of(self, node: int) -> str:
        try:
            s = self.status(node)
        except pymysql.Error as exc:
            return f"unreachable ({exc})"
        keys = ("wsrep_local_state_comment", "wsrep_cluster_status", "wsrep_cluster_size", "wsrep_ready")
        return " ".join(s.get(k, "?") for k in keys)

    # -- faults -----------------------------------------------------------------------------------

    def kill(self, node: int) -> None:
        """SIGKILL node ``node`` (and its SST helpers): a crash, no clean shutdown."""
        n = self.nodes[node - 1]
        if n.proc is None:
            return
        n.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(n.proc.pid, signal.SIGKILL)
        n.proc.wait(timeout=30)

    def restart(self, node: int, wait: bool = True) -> float:
        """Start a stopped or killed node again from its own datadir, after ``--wsrep-recover`` found
        its last committed position, so that it can rejoin by IST; returns seconds until Synced."""
        n = self.nodes[node - 1]
        if n.alive:
            raise RuntimeError(f"galera node {node} is running")
        started = time.monotonic()
        position = self._recover(n)
        self._spawn(n, f"--wsrep-start-position={position}")
        n.killed = False
        if wait:
            self._wait_node(n)
        return time.monotonic() - started

    def _recover(self, node: Node) -> str:
        out = node.dir / "recover.log"
        done = subprocess.run(
            [MARIADBD, f"--defaults-file={node.cnf}", "--wsrep-recover", f"--log-error={out}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        text = out.read_text(errors="replace") if out.exists() else done.stderr
        found = re.findall(r"WSREP: Recovered position:\s*(\S+)", text)
        if done.returncode != 0 or not found:
            raise RuntimeError(f"mariadbd --wsrep-recover of node {node.index} failed: {text[-2000:]}")
        out.unlink()
        return found[-1]

    def heal(self) -> None:
        """Bring every node back (restarting killed ones) and wait for a synced cluster of all."""
        for n in self.nodes:
            if not n.alive:
                self.restart(n.index, wait=False)
        self.wait_synced()

    # -- tear-down --------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Stop every process this cluster started and remove its files; safe after any failure."""
        for n in self.nodes:
            if n.alive and n.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    n.proc.terminate()
        for n in self.nodes:
            if n.proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                n.proc.wait(timeout=30)
            # The whole group: a clean shutdown leaves no helpers, a stuck one leaves no mariadbd.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(n.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                n.proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)
