"""A real Nautobot for the tests of the Nautobot driver, with everything it needs of its own.

One ``NautobotServer`` owns: a virtualenv with the pinned Nautobot (kept in a cache directory outside the
repository and reused, since installing it takes a minute and 560 MB), a Redis on a free port (Nautobot's
allocation endpoints take a Redis lock and answer 500 without it), a private PostgreSQL cluster on a free
port (``tests.private_postgres``), the schema restored from a dump kept in ``tests/nautobot/`` (running
Nautobot's 471 migrations takes 6-8 minutes of CPU; ``tools/nautobot_schema.py`` writes the dump), and
uWSGI on a free port with HTTP keep-alive. None of the machine's shared servers is touched.

Used as the session fixture ``nautobot_server`` (this module is a pytest plugin, loaded by
``tests/conftest.py``) by tests marked ``nautobot``, and by ``tools/nautobot_schema.py``. Under
pytest-xdist each worker that runs such a test starts its own server, as each has its own databases.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.private_postgres import PrivatePostgres
from tests.server import free_port

NAUTOBOT_VERSION = os.environ.get("PIPAM_NAUTOBOT_VERSION", "3.2.7")
SCHEMA_DIR = Path(__file__).parent / "nautobot"
DB_NAME = "nautobot"
USERNAME = "pipam"
PASSWORD = "pipam-test-only"
# Fixed so that a test (or a person poking at a kept server) can use it without asking; 40 hex characters
# is the form Nautobot's Token model requires.
TOKEN = "0123456789abcdef0123456789abcdef01234567"


class CannotRunHere(RuntimeError):
    """This machine lacks something a private Nautobot needs (redis-server, the package registry)."""


def dump_path(version: str) -> Path:
    return SCHEMA_DIR / f"nautobot-{version}.sql.gz"


def venv_path(version: str) -> Path:
    """Where the Nautobot virtualenv lives: $PIPAM_NAUTOBOT_VENV, or a per-version cache directory."""
    if override := os.environ.get("PIPAM_NAUTOBOT_VENV"):
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pipam" / f"nautobot-{version}"


def _installed(venv: Path, version: str) -> bool:
    # The marker is removed only after pip succeeded, so a venv left half-built by a killed run is redone.
    return (
        (venv / "bin" / "nautobot-server").exists()
        and not (venv / ".pipam-installing").exists()
        and bool(glob.glob(str(venv / "lib" / "python*" / "site-packages" / f"nautobot-{version}.dist-info")))
    )


def ensure_venv(version: str, say: Callable[[str], None] = print) -> Path:
    """Install Nautobot ``version`` into its venv unless already there; safe when two processes race."""
    venv = venv_path(version)
    if _installed(venv, version):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers may get here together: one installs, the others wait and then reuse.
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(venv, version):
            return venv
        say(f"installing nautobot=={version} into {venv} (about a minute)")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        (venv / ".pipam-installing").touch()
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"nautobot=={version}"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise CannotRunHere(f"pip install nautobot=={version} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        (venv / ".pipam-installing").unlink()
    return venv


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def _terminate(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own session, and everything it forked (uWSGI's workers)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    # The leader may be gone while a worker still lingers in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class PrivateRedis:
    """A Redis that keeps nothing on disk, on a free port of 127.0.0.1."""

    def __init__(self, base: Path) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise CannotRunHere("redis-server is not installed")
        self.port = free_port()
        self._log = open(base / "redis.log", "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [redis, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=base,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, self.proc, "redis-server", 10)

    def stop(self) -> None:
        _terminate(self.proc)
        self._log.close()


class NautobotServer:
    """Nautobot ``version`` serving on ``url``, with superuser ``USERNAME`` and API token ``token``.

    ``stop()`` / ``start()`` stop and restart only the Nautobot process (an outage; its data stays),
    ``freeze()`` / ``thaw()`` suspend it (connections are accepted but never answered: a hung server),
    ``destroy()`` stops everything this object started and deletes its files. With ``serve=False`` the
    database is ready but no web server runs (what ``tools/nautobot_schema.py`` needs).
    """

    def __init__(
        self,
        version: str = NAUTOBOT_VERSION,
        *,
        workers: int = 4,
        serve: bool = True,
        use_dump: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.version = version
        self.workers = workers
        self.say = say
        self.token = TOKEN
        self.timings: dict[str, float] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.redis: PrivateRedis | None = None
        self.pg: PrivatePostgres | None = None
        self.base = Path(tempfile.mkdtemp(prefix="pipam-nautobot-"))
        _watch(self)
        try:
            self._setup(serve, use_dump)
        except BaseException:  # also pytest's Skipped, raised by PrivatePostgres
            self.destroy()
            raise

    def _step(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 2)

    def _setup(self, serve: bool, use_dump: bool) -> None:
        t = time.monotonic()
        # First what tells whether this machine can run it at all (root, PostgreSQL, Redis), then the venv.
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis(self.base)
        self._step("postgres+redis", t)
        t = time.monotonic()
        self.venv = ensure_venv(self.version, self.say)
        self._step("venv", t)
        self._write_config()
        t = time.monotonic()
        self.psql("-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}")
        dump = dump_path(self.version)
        if use_dump and dump.exists():
            with gzip.open(dump, "rb") as f:
                self.psql("-d", DB_NAME, stdin=f.read())
            self._step("restore", t)
        else:
            if use_dump:
                self.say(f"no schema dump {dump.name} for Nautobot {self.version}: running its migrations (slow)")
            self.manage("migrate", "--no-input", timeout=1800)
            self._step("migrate", t)
        t = time.monotonic()
        if not self._has_token():  # the dump holds them already: skips 4 s of starting Django
            self.python(_ENSURE_SUPERUSER.format(username=USERNAME, password=PASSWORD, token=TOKEN))
        self._step("superuser", t)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if serve:
            self.start()

    # --- configuration --------------------------------------------------------------------------

    def _write_config(self) -> None:
        assert self.pg is not None and self.redis is not None
        self.config = self.base / "nautobot_config.py"
        self.config.write_text(
            textwrap.dedent(
                """\
                # Written by tests/nautobot_server.py for one test server; database and Redis come from
                # the NAUTOBOT_DB_* and NAUTOBOT_REDIS_* environment variables it sets.
                from nautobot.core.settings import *  # noqa: F403

                SECRET_KEY = "pipam-tests-only-not-a-secret-0123456789abcdefghijklmnopqrstuvw"
                ALLOWED_HOSTS = ["*"]
                INSTALLATION_METRICS_ENABLED = False
                """
            )
        )
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("NAUTOBOT_", "DJANGO_", "PYTHON"))}
        self.env = {
            **keep,
            "NAUTOBOT_CONFIG": str(self.config),
            "NAUTOBOT_ROOT": str(self.base / "root"),
            "NAUTOBOT_DB_HOST": "127.0.0.1",
            "NAUTOBOT_DB_PORT": str(self.pg.port),
            "NAUTOBOT_DB_USER": "postgres",
            "NAUTOBOT_DB_NAME": DB_NAME,
            "NAUTOBOT_REDIS_HOST": "127.0.0.1",
            "NAUTOBOT_REDIS_PORT": str(self.redis.port),
        }

    def _uwsgi_ini(self) -> Path:
        ini = self.base / "uwsgi.ini"
        ini.write_text(
            textwrap.dedent(
                f"""\
                [uwsgi]
                ; uWSGI's own HTTP router in front of the workers; without http-keepalive it closes every
                ; connection after one response and clients that reuse connections get RemoteDisconnected.
                http = 127.0.0.1:{self.port}
                http-keepalive = 1
                master = true
                processes = {self.workers}
                enable-threads = true
                single-interpreter = true
                ; SIGTERM stops the server instead of reloading it
                die-on-term = true
                need-app = true
                disable-logging = true
                log-4xx = true
                log-5xx = true
                """
            )
        )
        return ini

    # --- commands -------------------------------------------------------------------------------

    def _run(self, cmd: list[str], stdin: bytes | None = None, timeout: float = 300) -> str:
        done = subprocess.run(cmd, input=stdin, capture_output=True, env=self.env, timeout=timeout, cwd=self.base)
        if done.returncode != 0:
            err = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({done.returncode}):\n{err[-4000:]}")
        return done.stdout.decode(errors="replace")

    def psql(self, *args: str, stdin: bytes | None = None) -> str:
        assert self.pg is not None
        base = [str(self.pg.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        return self._run([*base, "-p", str(self.pg.port), "-U", "postgres", *args], stdin=stdin)

    def _has_token(self) -> bool:
        try:
            found = self.psql(
                "-d", DB_NAME, "-tA", "-c", f"SELECT count(*) FROM users_token WHERE key = '{self.token}'"
            )
        except RuntimeError:  # another Nautobot version may keep tokens elsewhere: make it the slow way
            return False
        return found.strip() == "1"

    def manage(self, *args: str, timeout: float = 300) -> str:
        """Run ``nautobot-server`` with this server's configuration."""
        return self._run([str(self.venv / "bin" / "nautobot-server"), *args], timeout=timeout)

    def python(self, code: str, timeout: float = 120) -> str:
        """Run Python in Nautobot's venv with this server's configuration."""
        return self._run([str(self.venv / "bin" / "python"), "-c", code], timeout=timeout)

    def dump_schema(self, path: Path) -> None:
        """Write this server's database as gzip'd plain SQL (``tools/nautobot_schema.py``)."""
        assert self.pg is not None
        cmd = [str(self.pg.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres"]
        sql = self._run([*cmd, "--no-owner", "--no-privileges", DB_NAME], timeout=600)
        # pg_dump 15.14+ brackets the dump with \restrict/\unrestrict and a random key, which older psql
        # reject and which changes every dump; this dump is ours and trusted, so drop them.
        sql = "".join(
            line for line in sql.splitlines(keepends=True) if not line.startswith(("\\restrict", "\\unrestrict"))
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same schema gives the same bytes, so a regenerated dump shows no spurious diff.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
            f.write(sql.encode())

    # --- the web server -------------------------------------------------------------------------

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        t = time.monotonic()
        log = open(self.base / "nautobot.log", "ab")  # noqa: SIM115  (the child keeps it; closed below)
        try:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "nautobot-server"), "start", "--ini", str(self._uwsgi_ini())],
                env=self.env,
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so that stop() reaches uWSGI's workers too
            )
        finally:
            log.close()
        self._wait_ready(timeout=120)
        self._step("start", t)

    def _wait_ready(self, timeout: float) -> None:
        import httpx  # test dependency; imported here so that the tool runs without it until it serves

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nautobot-server start exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                # Not /api/status/: it waits a second for Celery workers (there are none).
                probe = f"{self.url}/api/ipam/namespaces/?limit=1"
                if httpx.get(probe, headers=headers, timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"Nautobot did not answer within {timeout} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        path = self.base / "nautobot.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            # SIGKILL to the group: a crash, as an outage would be, and at once (uWSGI takes 1-4 s to
            # shut down on SIGTERM, SIGQUIT or SIGINT); a test server has nothing to save.
            _terminate(self.proc, signal.SIGKILL)
            self.proc = None
            # The leader is gone, but until the last worker is, the kernel still completes connections
            # on the listening socket (and then resets them): wait for connections to be refused.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                except OSError:
                    return
                time.sleep(0.05)
            raise RuntimeError(f"Nautobot still accepts connections on {self.port} after being killed")

    def freeze(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def destroy(self) -> None:
        _live.discard(self)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        self.stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.pg is not None:
            self.pg.destroy()
            self.pg = None
        shutil.rmtree(self.base, ignore_errors=True)


# Servers not yet destroyed. pytest runs fixture finalizers on failures and Ctrl-C, and atexit covers an
# interpreter that exits otherwise; SIGTERM (a CI timeout, say) would kill the process with neither, and
# leave a PostgreSQL, a Redis and a uWSGI running, hence the handler. Nothing helps against SIGKILL.
_live: set[NautobotServer] = set()
_handlers: list[bool] = []


def _watch(server: NautobotServer) -> None:
    if not _handlers:
        _handlers.append(True)
        atexit.register(_destroy_all)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL,
            None,
        ):
            signal.signal(signal.SIGTERM, _on_sigterm)
    _live.add(server)


def _destroy_all() -> None:
    for server in list(_live):
        server.destroy()


def _on_sigterm(signum: int, frame: object) -> None:
    _destroy_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


# Run with Nautobot's python: the superuser and token, made idempotently so that a dump that already
# holds them (or a second call) changes nothing.
_ENSURE_SUPERUSER = """
import nautobot
nautobot.setup()
from django.contrib.auth import get_user_model
from nautobot.users.models import Token
user, made = get_user_model().objects.get_or_create(
    username={username!r}, defaults={{"is_superuser": True, "is_staff": True}}
)
if made:
    user.set_password({password!r})
    user.save()
Token.objects.get_or_create(key={token!r}, defaults={{"user": user, "description": "pipam tests"}})
"""


# --- pytest plugin ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nautobot_server() -> Iterator[NautobotServer]:
    """A serving Nautobot for the whole session (skipped, or failed under CI=true, where it cannot run)."""
    try:
        server = NautobotServer()
    except CannotRunHere as exc:  # a missing root or PostgreSQL is reported by PrivatePostgres itself
        reason = f"cannot run a private Nautobot here: {str(exc).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def nautobot_namespace(nautobot_server: NautobotServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A namespace of its own in the session's Nautobot for one test, and the ``PIPAM_DRIVERS__NAUTOBOT__*``
    variables that point the Nautobot driver at it (so tests reusing one server never see each other's
    prefixes). Returns the driver's settings as a table."""
    import uuid

    from pipam.ipam.drivers.nautobot.client import NautobotClient

    name = f"pipam-test-{uuid.uuid4().hex[:10]}"
    with NautobotClient(nautobot_server.url, nautobot_server.token, timeout=60) as client:
        client.create_namespace(name)
    table = {"url": nautobot_server.url, "token": nautobot_server.token, "namespace": name, "timeout": "30"}
    for key, value in table.items():
        monkeypatch.setenv(f"PIPAM_DRIVERS__NAUTOBOT__{key.upper()}", value)
    return table
