"""Operator mistakes: each ends with one line on stderr naming what is wrong and where, exit status 2,
never a traceback (issue 14). Data is printed as text, never as Rich markup."""

from __future__ import annotations

import socket

import pytest

from pipam import __version__
from pipam.config import load_settings
from pipam.service.bootstrap import upgrade_database
from pipam.service.database import Database
from pipam.testing.local import LocalClient
from tests import corrupt
from tests.corrupt import ip
from tests.databases import fresh_url
from tests.test_cli import run


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PIPAM_DATABASE_URL": "oracle://scott@db/orcl"}, "unsupported database 'oracle'"),
        ({"PIPAM_DATABASE_URL": "postgresql+asyncpg://u@h/d"}, "unsupported database 'postgresql+asyncpg'"),
        ({"PIPAM_DATABASE_URL": "mysql+mysqldb://u@h/d"}, "unsupported database 'mysql+mysqldb'"),
        ({"PIPAM_DATABASE_URL": "not a url"}, "PIPAM_DATABASE_URL"),
        ({"PIPAM_LOG_LEVEL": "LOUD"}, "PIPAM_LOG_LEVEL='LOUD'"),
        ({"PIPAM_PORT": "70000"}, "PIPAM_PORT='70000'"),
        ({"PIPAM_PORT": "abc"}, "PIPAM_PORT='abc'"),
        ({"PIPAM_PORT": "0"}, "PIPAM_PORT='0'"),
        ({"PIPAM_MAX_PAGE_SIZE": "0"}, "PIPAM_MAX_PAGE_SIZE='0'"),
        ({"PIPAM_WORKERS": "0"}, "PIPAM_WORKERS='0'"),
        ({"PIPAM_MAX_BULK": "0"}, "PIPAM_MAX_BULK='0'"),
    ],
)
def test_a_bad_setting_in_the_environment(tmp_path, env, expected):
    done = run("db", "current", env={"PIPAM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **env})
    assert done.returncode == 2, done
    assert expected in one_line(done.stderr)


@pytest.mark.parametrize("command", [("db", "upgrade"), ("ipam", "status"), ("serve", "--port", "1")])
def test_every_command_refuses_a_bad_setting_before_doing_anything(tmp_path, command):
    done = run(*command, env={"PIPAM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "PIPAM_LOG_LEVEL": "LOUD"})
    assert done.returncode == 2 and "PIPAM_LOG_LEVEL='LOUD'" in one_line(done.stderr)
    assert not (tmp_path / "x.db").exists()


def test_a_secret_is_not_repeated_in_the_message():
    done = run("db", "current", env={"PIPAM_DATABASE_URL": "oracle://scott:tiger@db/orcl"})
    line = one_line(done.stderr)
    assert done.returncode == 2 and "PIPAM_DATABASE_URL" in line and "tiger" not in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('port = 9000\n# a comment\ndatabse_url = "sqlite:///x.db"\n', "unknown setting 'databse_url' in {f}, line 3"),
        ("workers = 0\n", "invalid setting workers in {f}, line 1"),
        ("max_page_size = 0\n", "invalid setting max_page_size in {f}, line 1"),
        ('log_level = "LOUD"\n', "invalid setting log_level in {f}, line 1"),
        ('database_url = "oracle://x/y"\n', "unsupported database 'oracle'"),
        ("database_url = \n", "TOML syntax error"),
        ("[drivers\n", "TOML syntax error"),
    ],
)
def test_a_bad_configuration_file(tmp_path, text, expected):
    path = tmp_path / "pipam.toml"
    path.write_text(text)
    for args in (("--config", str(path), "db", "current"), ("db", "current", "--config", str(path))):
        done = run(*args)
        assert done.returncode == 2, done
        assert expected.format(f=path) in one_line(done.stderr)


def test_unknown_setting_suggests_the_close_one(tmp_path):
    path = tmp_path / "pipam.toml"
    path.write_text("max_pagesize = 10\n")
    assert "did you mean 'max_page_size'" in one_line(run("db", "current", "--config", str(path)).stderr)


def test_a_misspelt_variable_is_warned_about(tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    done = run("db", "upgrade", env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVE": "builtin"})
    assert done.returncode == 0
    line = one_line(done.stderr)
    assert "PIPAM_IPAM_DRIVE" in line and "did you mean PIPAM_IPAM_DRIVER" in line
    # Names the test suite and installed drivers own are not warned about.
    done = run("db", "current", env={"PIPAM_DATABASE_URL": url, "PIPAM_TEST_X": "1", "PIPAM_EXTIPAM_DB": "x"})
    assert done.returncode == 0 and done.stderr == ""


def test_config_after_the_subcommand_and_version(tmp_path):
    path = tmp_path / "conf.toml"
    path.write_text(f'database_url = "sqlite:///{tmp_path}/c.db"\nipam_driver = "builtin"\n')
    assert run("db", "upgrade", "--config", str(path)).returncode == 0
    assert "builtin" in run("ipam", "status", "-c", str(path)).stdout
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"pipam {__version__}"


def test_upgrade_refuses_a_driver_that_is_not_installed(tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    done = run("db", "upgrade", env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": "nope"})
    line = one_line(done.stderr)
    assert done.returncode == 2 and "'nope' is not installed" in line and "builtin" in line and "internal" in line
    assert not (tmp_path / "x.db").exists()
    # Also on a database that already records its backend: the setting is wrong all the same.
    assert run("db", "upgrade", env={"PIPAM_DATABASE_URL": url}).returncode == 0
    done = run("db", "upgrade", env={"PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": "nope"})
    assert done.returncode == 2 and "'nope' is not installed" in one_line(done.stderr)
    assert "active backend:    internal" in run("ipam", "status", env={"PIPAM_DATABASE_URL": url}).stdout


def test_serve_on_a_busy_port_says_so_before_starting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("serve", "--port", str(port), env={"PIPAM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in one_line(done.stderr) and "already in use" in done.stderr
    assert "startup complete" not in done.stdout + done.stderr


def test_serve_on_an_empty_server_database_says_run_db_upgrade(tmp_path):
    url = fresh_url("postgresql", str(tmp_path), "emptyserve")
    done = run("serve", "--port", "1", env={"PIPAM_DATABASE_URL": url})
    assert done.returncode != 0
    assert "run 'pipam db upgrade'" in one_line(done.stderr)


def test_values_are_printed_as_text_not_markup(tmp_path):
    """A value in brackets stays, and an IPv6 address holding ':a:' is no emoji code."""
    done = run("db", "current", env={"PIPAM_PORT": "[abc]"})
    assert "'[abc]'" in one_line(done.stderr)
    url = f"sqlite:///{tmp_path}/v6.db"
    db = Database(load_settings(database_url=url))
    upgrade_database(db.engine, "internal")
    client = LocalClient(db)
    net = client.create("network", name="n")
    sub = client.create("subnet", network_id=net["id"], ip_version=6, cidr="fd00:a:a::/64")
    client.create("port", network_id=net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "fd00:a:a::a"}])
    # Free space that hands out the port's address again: verify lists the range, address by address.
    corrupt.insert_range(db.engine, "internal", sub["id"], ip("fd00:a:a::a"), ip("fd00:a:a::a"))
    db.dispose()
    done = run("ipam", "verify", env={"PIPAM_DATABASE_URL": url})
    assert done.returncode == 1, done
    assert "fd00:a:a::a" in done.stdout and "🅰" not in done.stdout
