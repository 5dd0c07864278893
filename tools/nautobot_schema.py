#!/usr/bin/env python3
"""Write the Nautobot schema dump that the test fixture restores instead of migrating.

Runs ``nautobot-server migrate`` for one Nautobot version on a private PostgreSQL and Redis of its own
(none of the machine's shared servers is touched), creates the tests' superuser and API token, and writes
the database as gzip'd plain SQL to ``tests/nautobot/nautobot-<version>.sql.gz``. Takes 6-8 minutes, most
of it Nautobot's migrations. Needs root and the PostgreSQL server binaries, like the fixture.

    .venv/bin/python tools/nautobot_schema.py                   # the pinned version
    .venv/bin/python tools/nautobot_schema.py --version 3.2.8   # another; then pin it (PIPAM_NAUTOBOT_VERSION)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402  (PrivatePostgres reports a machine it cannot run on with pytest.skip)
from tests.nautobot_server import NAUTOBOT_VERSION, NautobotServer, dump_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=NAUTOBOT_VERSION, help="Nautobot version (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="default: tests/nautobot/nautobot-VERSION.sql.gz")
    args = parser.parse_args(argv)
    output: Path = args.output or dump_path(args.version)

    started = time.monotonic()
    try:
        server = NautobotServer(args.version, serve=False, use_dump=False)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"cannot run here: {exc}", file=sys.stderr)
        return 2
    try:
        server.dump_schema(output)
    finally:
        server.destroy()
    size = output.stat().st_size
    steps = ", ".join(f"{k} {v} s" for k, v in server.timings.items())
    print(f"wrote {output} ({size / 1e6:.2f} MB) in {time.monotonic() - started:.0f} s ({steps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
