"""kill -9 of the migration at every point, then again at random moments: a re-run always finishes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from pipam.db.models import IpamMigration
from pipam.errors import PipamError
from pipam.service import ports
from tests import dataset
from tests.helpers import net, port

PIPAM = str(Path(sys.executable).with_name("pipam"))
OTHER = {"builtin": "internal", "internal": "builtin"}
POINTS = ["after-fence", "in-prune", "in-batch-1", "after-batch-1", "in-batch-3", "after-batch-4", "after-verify"]


def migrate(url: str, driver: str, target: str, crash_at: str | None = None, batch: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": driver}
    env.pop("PIPAM_TEST_CRASH_AT", None)
    if crash_at:
        env["PIPAM_TEST_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [PIPAM, "ipam", "migrate", "--to", target, "--yes", "--json", "--batch-size", str(batch)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(url: str, driver: str, target: str) -> dict:
    proc = migrate(url, driver, target, batch=3)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err + out
    return json.loads(out)


def verify_clean(url: str, driver: str) -> None:
    env = {**os.environ, "PIPAM_DATABASE_URL": url, "PIPAM_IPAM_DRIVER": driver}
    done = subprocess.run([PIPAM, "ipam", "verify"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_point_then_rerun_finishes(db, schema_url, backend, point):
    dataset.build_many(db, 6, 5)
    made = dataset.build(db, 40)
    before = dataset.holdings(db)
    target = OTHER[backend]
    proc = migrate(schema_url, backend, target, crash_at=point)
    proc.communicate(timeout=300)
    assert proc.returncode == -9, f"the migration was not killed at {point}"
    # The fence outlives the process: address changes stay refused until the job is finished.
    with pytest.raises(PipamError) as info:
        port(db, made["a"]["id"])
    assert info.value.status == 503
    report = finish(schema_url, backend, target)
    assert report["outcome"] == "completed" and report["resumed"], report
    assert report["verification"]["clean"]
    verify_clean(schema_url, target)
    new = db.__class__(db.settings.model_copy(update={"ipam_driver": target}))
    assert dataset.holdings(new) == before
    ips = [
        new.run(lambda u: ports.create(u, {"network_id": made["b"]["id"]}))["fixed_ips"][0]["ip_address"]
        for _ in range(10)
    ]
    taken = {ip for pairs in before.values() for _, ip in pairs}
    assert not set(ips) & taken and len(set(ips)) == 10
    new.dispose()


def wait_until_running(db, proc: subprocess.Popen) -> None:  # type: ignore[no-untyped-def]
    """Until the migration has recorded itself (it is past start-up and preflight) or has ended."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        with db.session(write=False) as session:
            if session.scalar(select(IpamMigration.id).where(IpamMigration.status == "running")):
                return
        time.sleep(0.02)


@pytest.mark.slow
def test_random_kills_both_ways(db, schema_url, backend):
    """Kill at random moments, re-run, kill again...; then migrate back the same way."""
    dataset.build_many(db, 150, 3)
    before = dataset.holdings(db)
    rnd = random.Random(1234)
    driver = backend
    kills = 0
    for target in (OTHER[backend], backend):
        for _ in range(6):
            proc = migrate(schema_url, driver, target)
            wait_until_running(db, proc)
            time.sleep(rnd.uniform(0, 0.4))
            if proc.poll() is None:
                proc.kill()
                kills += 1
            proc.communicate(timeout=300)
            if proc.returncode == 0:
                break
        report = finish(schema_url, driver, target)
        assert report["outcome"] in ("completed", "nothing-to-do"), report
        verify_clean(schema_url, target)
        driver = target
        final = db.__class__(db.settings.model_copy(update={"ipam_driver": target}))
        assert dataset.holdings(final) == before
        final.dispose()
    assert kills >= 2, "no migration was interrupted: the random delays need adjusting"
    port(db, net(db)["id"], fixed_ips=[])
