"""The command line: clear messages and non-zero exits, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipam.config import load_settings
from pipam.db import schema
from pipam.service.database import Database
from tests.server import Server

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
    assert done.returncode == 2 and "invalid configuration" in done.stderr and "Traceback" not in done.stderr
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
    assert run("db", "current", cwd=str(tmp_path)).stdout.startswith("0002 (head)")


def test_unreachable_database_is_one_clear_line():
    done = run("db", "current", env={"PIPAM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert done.returncode == 1 and "database error" in done.stderr and "Traceback" not in done.stderr


def test_status_on_empty_database_says_what_to_do(tmp_path):
    done = run("ipam", "status", env={"PIPAM_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    assert done.returncode == 1 and "pipam db upgrade" in done.stderr


def test_server_warns_about_deprecated_and_mismatched_backend(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    db = Database(load_settings(database_url=url, ipam_driver="builtin"))
    schema.upgrade(db.engine, "builtin")
    db.dispose()
    legacy = Server(url, "builtin", tmp_path / "legacy.log", log_level="INFO")
    legacy.stop()
    assert "deprecated" in (tmp_path / "legacy.log").read_text()

    srv = Server(url, "internal", tmp_path / "mismatch.log", log_level="INFO")
    try:
        with httpx.Client(base_url=srv.base) as api:
            n = api.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
            r = api.post(
                "/v2.0/subnets", json={"subnet": {"network_id": n["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}}
            )
            assert r.status_code == 503 and r.headers["retry-after"]
            message = r.json()["NeutronError"]["message"]
            assert r.json()["NeutronError"]["type"] == "IpamBackendMismatch"
            assert "'internal'" in message and "'builtin'" in message and "pipam ipam migrate --to internal" in message
            assert api.get("/v2.0/networks").status_code == 200  # reads keep working
    finally:
        srv.stop()
    time.sleep(0.1)
    assert "differs from the database's active backend" in (tmp_path / "mismatch.log").read_text()


def test_serve_refuses_an_old_schema(tmp_path):
    done = run("serve", "--port", "1", env={"PIPAM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
