"""kill -9 of the migration at every point, then at random moments; a second run started beside a live
one. A re-run always finishes, and nothing changed meanwhile is lost."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from pipam.db.models import IpamMigration
from pipam.service.database import Database
from pipam.testing import local
from tests import dataset
from tests.helpers import error_of, net, port

OTHER = {"builtin": "internal", "internal": "builtin"}
# Every checkpoint the run reports, in order; in-* points are inside a transaction.
POINTS = [
    "after-start",
    "in-prune",
    "in-batch-1",
    "after-batch-1",
    "in-batch-3",
    "after-batch-4",
    "after-catch-up",
    "after-verify",
    "after-fence",
]
# The phases a run records, in order.
PHASES = ["prune", "copy", "catch-up", "switch"]


def migrate(
    url: str, target: str, *, crash_at: str | None = None, pause_at: str | None = None, batch: int = 1
) -> subprocess.Popen[str]:
    env = {**os.environ, "PIPAM_DATABASE_URL": url}
    hooks = []
    if crash_at:
        hooks += ["--crash-at", crash_at]
    if pause_at:
        hooks += ["--pause-at", pause_at, "--pause", "30"]
    command = ["ipam", "migrate", "--to", target, "--yes", "--json", "--batch-size", str(batch)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.migrate_hooks", *hooks, "--", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(url: str, target: str) -> dict:
    proc = migrate(url, target, batch=3)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err + out
    return json.loads(out)


def verify_clean(url: str) -> None:
    env = {**os.environ, "PIPAM_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "pipam.cli.main", "ipam", "verify"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def expire_lease(db: Database) -> None:
    """What waiting out the lease of a killed run does, without the wait."""
    with db.engine.begin() as conn:
        conn.execute(IpamMigration.__table__.update().values(heartbeat_at=None))


def churn(db: Database, network_id: str) -> None:
    """Address changes while no migration process is alive: they must reach the target too."""
    made = [port(db, network_id)["id"] for _ in range(4)]
    local_client = local.LocalClient(db)
    local_client.delete("port", made[0])
    local_client.update("port", made[1], fixed_ips=[])


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_point_then_rerun_finishes(db, schema_url, backend, point):
    dataset.build_many(db, 6, 5)
    made = dataset.build(db, 40)
    target = OTHER[backend]
    proc = migrate(schema_url, target, crash_at=point)
    proc.communicate(timeout=300)
    assert proc.returncode == -9, f"the migration was not killed at {point}"
    if point == "after-fence":
        # Killed in the switch: the fence outlives the process, address changes wait for a re-run.
        err = error_of(lambda: port(db, made["a"]["id"]))
        assert (err.status, err.type) == (503, "IpamMigrationInProgress")
    else:
        churn(db, made["a"]["id"])  # the run was online: servers kept allocating, journalled
    expire_lease(db)
    before = dataset.holdings(db)
    report = finish(schema_url, target)
    assert report["outcome"] == "completed" and report["resumed"], report
    assert report["verification"]["clean"]
    verify_clean(schema_url)
    assert dataset.holdings(db) == before
    ips = [db.run(lambda u: local.create(u, "port", {"network_id": made["b"]["id"]}))["fixed_ips"][0]["ip_address"]]
    ips += [port(db, made["b"]["id"])["fixed_ips"][0]["ip_address"] for _ in range(9)]
    taken = {ip for pairs in before.values() for _, ip in pairs}
    assert not set(ips) & taken and len(set(ips)) == 10
    assert db.run(lambda u: type(u.addresses.driver).name) == target


def run_state(db: Database) -> tuple[str | None, str | None, str | None]:
    """(owner, phase, last heartbeat) of the running migration."""
    with db.session(write=False) as session:
        row = session.execute(
            select(IpamMigration.owner, IpamMigration.phase, IpamMigration.heartbeat_at).where(
                IpamMigration.status == "running"
            )
        ).first()
    return (row[0], row[1], row[2]) if row else (None, None, None)


def wait_for_own_progress(db: Database, proc: subprocess.Popen[str], previous_owner: str | None) -> str | None:
    """Until this run owns the migration and has renewed its lease (it is past start-up), or has ended."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        owner, _, heartbeat = run_state(db)
        if owner is not None and owner != previous_owner and heartbeat is not None:
            return owner
        time.sleep(0.02)
    return None


def wait_for_phase(db: Database, proc: subprocess.Popen[str], phase: str) -> None:
    """Until the running migration reports ``phase`` (or has moved on, or its process has ended)."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        current = run_state(db)[1]
        if current is None or current == phase or PHASES.index(current) > PHASES.index(phase):
            return
        time.sleep(0.005)


@pytest.mark.slow
def test_random_kills_both_ways(db, schema_url, backend):
    """Kill at random moments once the new run is under way, re-run, kill again...; then migrate back."""
    dataset.build_many(db, 150, 3)
    before = dataset.holdings(db)
    rnd = random.Random(1234)
    kills_in_copy = 0
    for target in (OTHER[backend], backend):
        owner = None
        for attempt in range(6):
            proc = migrate(schema_url, target)
            owner = wait_for_own_progress(db, proc, owner)
            if attempt % 2 == 0:
                # Every other kill lands inside the copy, where a run spends its time on a large
                # deployment; on a fast machine a random delay alone would mostly miss it.
                wait_for_phase(db, proc, "copy")
                time.sleep(rnd.uniform(0, 0.05))
            else:
                time.sleep(rnd.uniform(0, 0.4))
            if proc.poll() is None:
                phase = run_state(db)[1]
                proc.kill()
                proc.communicate(timeout=60)
                kills_in_copy += phase == "copy"
                expire_lease(db)
                continue
            proc.communicate(timeout=300)
            if proc.returncode == 0:
                break
        report = finish(schema_url, target)
        assert report["outcome"] in ("completed", "nothing-to-do"), report
        verify_clean(schema_url)
        assert dataset.holdings(db) == before
    assert kills_in_copy >= 4, f"only {kills_in_copy} kills landed in the copy phase: adjust the delays"
    port(db, net(db)["id"], fixed_ips=[])


@pytest.mark.slow
def test_a_second_run_is_refused_while_the_first_lives_and_resumes_after_it_dies(db, schema_url, backend):
    dataset.build_many(db, 20, 2)
    target = OTHER[backend]
    first = migrate(schema_url, target, pause_at="after-batch-2")
    try:
        owner = wait_for_own_progress(db, first, None)
        assert owner is not None, "the first run did not start"
        second = migrate(schema_url, target)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1, out + err
        refusal = json.loads(out)["message"]
        assert "already running" in refusal and owner in refusal and "last heartbeat" in refusal, refusal
        # Aborting a live run, or a migration to another backend, is refused too.
        aborted = migrate_abort(schema_url, "nosuch")
        assert aborted.returncode == 1 and "not to 'nosuch'" in aborted.stdout + aborted.stderr
        aborted = migrate_abort(schema_url, target)
        assert aborted.returncode == 1 and "is running" in aborted.stdout + aborted.stderr
    finally:
        first.kill()
        first.communicate(timeout=60)
    expire_lease(db)
    report = finish(schema_url, target)
    assert report["outcome"] == "completed" and report["resumed"] and report["verification"]["clean"], report
    with db.session(write=False) as session:
        statuses = list(session.scalars(select(IpamMigration.status)))
    assert statuses == ["completed"]


def migrate_abort(url: str, target: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPAM_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "pipam.cli.main", "ipam", "migrate", "--to", target, "--abort"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
