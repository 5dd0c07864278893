"""The command line: clear messages and non-zero exits, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from pipam.config import load_settings
from pipam.db.engine import make_engine
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from tests.server import Server, free_port
from tests.test_schema_upgrade import legacy

PIPAM = str(Path(sys.executable).with_name("pipam"))


def run(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PIPAM_")}
    full.update(env or {})
    return subprocess.run([PIPAM, *args], capture_output=True, text=True, timeout=120, env=full, cwd=cwd)


def test_help_explains_every_command():
    for args in ([], ["db"], ["ipam"], ["ipam", "migrate"], ["serve"]):
        done = run(*args, "--help")
        assert done.returncode == 0 and "Usage" in done.stdout
    assert "--batch-size" in run("ipam", "migrate", "--help").stdout
    assert "--abort" in run("ipam", "migrate", "--help").stdout


def test_missing_and_broken_config_files(tmp_path):
    done = run("--config", str(tmp_path / "nope.toml"), "db", "current")
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'many'\n")
    done = run("--config", str(bad), "db", "current")
    assert done.returncode == 2 and "invalid setting port in" in done.stderr and "Traceback" not in done.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    assert run("--config", str(unknown), "db", "current").returncode == 2


def test_config_file_and_environment(tmp_path):
    cfg = tmp_path / "pipam.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path}/from-file.db"\nipam_driver = "builtin"\n')
    done = run("db", "upgrade", cwd=str(tmp_path))  # ./pipam.toml is read by default
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from-file.db").exists()
    assert "builtin" in run("ipam", "status", cwd=str(tmp_path)).stdout
    # The environment wins over the file.
    done = run("db", "upgrade", cwd=str(tmp_path), env={"PIPAM_DATABASE_URL": f"sqlite:///{tmp_path}/env.db"})
    assert done.returncode == 0 and (tmp_path / "env.db").exists()
    current = run("db", "current", cwd=str(tmp_path)).stdout
    assert "(head)" in current and "internal_0001" in current, current


def test_unreachable_database_is_one_clear_line():
    done = run("db", "current", env={"PIPAM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert done.returncode == 1 and "database error" in done.stderr and "Traceback" not in done.stderr


def test_status_on_empty_database_says_what_to_do(tmp_path):
    done = run("ipam", "status", env={"PIPAM_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    assert done.returncode == 1 and "pipam db upgrade" in done.stderr


def test_server_warns_about_a_deprecated_backend(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    db = Database(load_settings(database_url=url, ipam_driver="builtin"))
    upgrade_database(db.engine, "builtin")
    db.dispose()
    legacy = Server(url, "builtin", tmp_path / "legacy.log", log_level="INFO")
    legacy.stop()
    assert "deprecated" in (tmp_path / "legacy.log").read_text()


def test_servers_follow_the_database_s_backend_unless_pinned(tmp_path):
    """A server configured for another backend allocates through the one the database records; a
    pinned one refuses address changes (503) and says it is not ready, so load balancers skip it."""
    url = f"sqlite:///{tmp_path}/s.db"
    db = Database(load_settings(database_url=url, ipam_driver="builtin"))
    upgrade_database(db.engine, "builtin")
    db.dispose()
    follower = Server(url, "internal", tmp_path / "follower.log")
    pinned = Server(url, "internal", tmp_path / "pinned.log", pin_ipam_driver="true")
    try:
        with httpx.Client(base_url=follower.base) as api, httpx.Client(base_url=pinned.base) as other:
            n = api.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
            body = {"subnet": {"network_id": n["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}}
            assert api.post("/v2.0/subnets", json=body).status_code == 201
            assert api.get("/healthz").json()["active_backend"] == "builtin"
            r = other.post("/v2.0/ports", json={"port": {"network_id": n["id"]}})
            assert r.status_code == 503 and r.headers["retry-after"]
            assert r.json()["NeutronError"]["type"] == "IpamBackendUnavailable"
            message = r.json()["NeutronError"]["message"]
            assert "'internal'" in message and "'builtin'" in message and "pin_ipam_driver" in message
            assert other.get("/v2.0/networks").status_code == 200  # reads keep working
            health = other.get("/healthz")
            assert health.status_code == 503 and "pin_ipam_driver" in health.json()["reason"]
    finally:
        follower.stop()
        pinned.stop()
    assert "pin_ipam_driver" in (tmp_path / "pinned.log").read_text()


def test_serve_refuses_an_old_schema(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    legacy(engine, "0002")
    engine.dispose()
    done = run("serve", "--port", str(free_port()), env={"PIPAM_DATABASE_URL": url})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "0002" in done.stderr and "pipam db upgrade" in done.stderr, done.stderr


def test_serve_on_an_unreachable_database_is_one_line():
    done = run("serve", "--port", "1", env={"PIPAM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert done.returncode == 1 and "Traceback" not in done.stderr and "database error" in done.stderr
