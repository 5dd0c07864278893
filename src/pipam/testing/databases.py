"""Scratch databases on a PostgreSQL or MariaDB server, or in a SQLite file, for tests and benchmarks."""

from __future__ import annotations

import contextlib

from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import make_url

from pipam.db.base import Base
from pipam.db.engine import normalise_url
from pipam.db.transactions import Runner
from pipam.errors import IpamDriverNotFound
from pipam.ipam import state
from pipam.ipam.registry import available_drivers, load_driver


def recreate(admin_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``admin_url``; returns the new database's URL."""
    admin_url = normalise_url(admin_url)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop(admin_url: str, name: str) -> None:
    engine = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        engine.dispose()


def reset(engine: Engine, backend: str) -> None:
    """Empty every Pipam table (core and installed drivers') and make ``backend`` the active one, with
    no fence, journal or migration: each test starts from a clean database."""
    for name in available_drivers():
        with contextlib.suppress(IpamDriverNotFound):  # a broken driver has no tables to empty here
            load_driver(name)  # registers the driver's own tables, if it has any
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "ipam_state":
                conn.execute(delete(table))
        conn.execute(delete(Base.metadata.tables["ipam_state"]))
    Runner(engine).run(lambda tx: state.initialise(tx.session, backend))
