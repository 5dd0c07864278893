"""The end of a test run says once per database that it was not tested, not once per test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBNETS = "tests/test_subnets.py"


def test_an_unreachable_database_is_one_summary_line():
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID")}
    env["PIPAM_TEST_MARIADB_URL"] = "mysql+pymysql://root@127.0.0.1:1/test"  # nothing listens on port 1
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-n", "0", "-q", "-k", "mariadb", SUBNETS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    lines = done.stdout.splitlines()
    summary = [line for line in lines if line.startswith("database tests SKIPPED: mariadb")]
    assert len(summary) == 1, done.stdout[-3000:]
    assert "mariadb not reachable at mysql+pymysql://root@127.0.0.1:1/test" in summary[0]
    assert not [line for line in lines if line.startswith("SKIPPED [")], done.stdout[-3000:]
    # The last line still counts them: as many as the summary line says.
    count = re.search(r"\((\d+) tests\)$", summary[0])
    assert count and f"{count.group(1)} skipped (database not reachable)" in lines[-1], lines[-1]
