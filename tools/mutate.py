"""Mutation check: put each deliberate bug into a copy of the code, run the tests that should catch it,
and print which were caught (a test failed) and which survived (every selected test passed).

    .venv/bin/python tools/mutate.py                 # every mutation
    .venv/bin/python tools/mutate.py fence-wait isolation-lists   # some, by name
    .venv/bin/python tools/mutate.py --baseline      # also run each selection unmutated (must pass)
    .venv/bin/python tools/mutate.py --list

Each run works in a scratch copy of src/ and tests/ (the worktree is never edited), imported ahead of
the installed package through PYTHONPATH, also by the `pipam` subprocesses the tests start. Tests run
one at a time (-n 0) on the databases the mutation needs (SQLite unless it needs a server's row locks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str  # the bug, in words
    path: str  # the file changed, under src/pipam
    edits: tuple[tuple[str, str], ...]  # (text, replacement): each text must occur exactly once
    tests: tuple[str, ...]  # pytest arguments: test files or node ids, and -k expressions


MUTATIONS = [
    Mutation(
        "fence-wait",
        "the gate's wait is gone: an address change reads the gate without writing its slot",
        "ipam/state.py",
        (
            (
                "row = conn.execute(_touch(slot).returning(*_GATE_COLUMNS)).first()",
                "row = conn.execute(select(*_GATE_COLUMNS).where(IpamGate.slot == slot)).first()",
            ),
            ("        conn.execute(_touch(slot))\n", "        pass\n"),
        ),
        ("tests/test_fence_race.py", "-k", "postgresql or mariadb"),
    ),
    Mutation(
        "isolation-lists",
        "lists are restricted to the caller's project only for resources with a shared column",
        "service/policy.py",
        (
            (
                "return None if found is None else found.where(caller, resource)",
                'return None if found is None or not hasattr(resource.model, "shared") else '
                "found.where(caller, resource)",
            ),
        ),
        ("tests/api/test_isolation.py", "-k", "sqlite"),
    ),
    Mutation(
        "verify-pools",
        "verify ignores pool differences",
        "migration/compare.py",
        (("if sorted(core.pools) != sorted(backend.pools):", "if False:"),),
        ("tests/test_verify_pools.py", "-k", "sqlite"),
    ),
    Mutation(
        "serve-old-schema",
        "pipam serve accepts a database whose schema is not current",
        "cli/serve.py",
        (("        require_current(engine)\n", "        pass\n"),),
        ("tests/test_cli.py", "-k", "old_schema"),
    ),
    Mutation(
        "cas-guard",
        "the compare-and-swap guard on a free range is dropped (only the row id is checked)",
        "ipam/free_ranges.py",
        (
            (
                'guard = (c.id == bindparam("rid"), c.first_key == bindparam("old_first"), '
                'c.last_key == bindparam("old_last"))',
                'guard = (c.id == bindparam("rid"),)',
            ),
        ),
        # SQLite runs one write transaction at a time, so no claim is ever lost there: a server database.
        ("tests/test_concurrency.py", "-k", "postgresql and eight"),
    ),
    Mutation(
        "handed-twice",
        "an address is handed out without being claimed from the free ranges",
        "ipam/free_ranges.py",
        (
            (
                "            if not self._claim(session, owner_id, rng, first, last):\n",
                "            if False:\n",
            ),
        ),
        ("tests/test_ports.py", "-k", "sqlite"),
    ),
    Mutation(
        "fence-check",
        "address changes go ahead while the fence is up",
        "ipam/state.py",
        (("    if status.fence is not None:\n", "    if False:\n"),),
        ("tests/test_migration.py", "-k", "sqlite and fence_refuses"),
    ),
    Mutation(
        "backend-mismatch",
        "a server pinned to another backend allocates through the database's anyway",
        "service/database.py",
        (("if self.settings.pin_ipam_driver and name != self.settings.ipam_driver:", "if False:"),),
        ("tests/test_cli.py", "-k", "pinned"),
    ),
    Mutation(
        "verify-missing",
        "verify does not see allocations missing from the backend",
        "migration/compare.py",
        (("    if missing:\n", "    if False:\n"),),
        ("tests/test_migration.py", "-k", "sqlite and verify_lists"),
    ),
    Mutation(
        "release-leak",
        "releasing an address does not return it to the free ranges",
        "ipam/range_subnet.py",
        (
            (
                "            self.ranges.give_back(self.session, self.owner_id, pool.pool_id, value)\n"
                "\n    def reconcile",
                "            pass\n\n    def reconcile",
            ),
        ),
        ("tests/test_ports.py", "-k", "sqlite"),
    ),
    Mutation(
        "give-back-off-by-one",
        "a returned address joins the range two below it, freeing a neighbour still allocated",
        "ipam/free_ranges.py",
        (('{**params, "edge": to_key(value - 1)}', '{**params, "edge": to_key(value - 2)}'),),
        ("tests/test_properties.py", "-k", "sqlite and allocator_against_model"),
    ),
    Mutation(
        "any-project",
        "any project sees any resource",
        "service/policy.py",
        (
            (
                'may read; None for an admin."""\n    if caller.admin:',
                'may read; None for an admin."""\n    if True:',
            ),
        ),
        ("tests/api/test_isolation.py", "-k", "sqlite"),
    ),
    Mutation(
        "verify-stale-subnets",
        "verify skips subnets the backend holds and the core does not",
        "migration/compare.py",
        (
            (
                "    if core is None and backend is not None:\n",
                "    if core is None and backend is not None:\n        return\n",
            ),
        ),
        ("tests/test_migration.py", "-k", "sqlite and verify_lists"),
    ),
]


def scratch_copy(into: Path) -> Path:
    copy = into / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "*.db")
    for part in ("src", "tests", "bench", "tools"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def apply(copy: Path, mutation: Mutation) -> None:
    path = copy / "src" / "pipam" / mutation.path
    text = path.read_text()
    for old, new in mutation.edits:
        found = text.count(old)
        if found != 1:
            raise SystemExit(f"{mutation.name}: expected the text once in {mutation.path}, found {found}: {old!r}")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(copy: Path, mutation: Mutation, log: Path) -> tuple[bool, float]:
    """True when every selected test passed (and at least one ran)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy / "src"), str(copy)])}
    where = subprocess.run(
        [sys.executable, "-c", "import pipam; print(pipam.__file__)"], env=env, capture_output=True, text=True, cwd=copy
    ).stdout.strip()
    if not where.startswith(str(copy)):
        raise SystemExit(f"the copy is not imported first (pipam from {where})")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0", "-x", "-q"]
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run([*cmd, *mutation.tests], env=env, cwd=copy, stdout=out, stderr=subprocess.STDOUT)
    took = time.monotonic() - started
    # Exit 5: no test was collected, which proves nothing either way.
    if done.returncode == 5:
        raise SystemExit(f"{mutation.name}: the selection {mutation.tests} runs no test (see {log})")
    return done.returncode == 0, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--baseline", action="store_true", help="first run each selection on the unmutated copy")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--logs", type=Path, help="directory for the pytest output of each run (default: a temp dir)")
    args = parser.parse_args()
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:22} {m.path:24} {m.what}")
        return
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="pipam-mutate-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in chosen:
        with tempfile.TemporaryDirectory(prefix="pipam-mutate-") as tmp:
            if args.baseline:
                clean = scratch_copy(Path(tmp) / "clean")
                passed, _ = run_tests(clean, m, logs / f"{m.name}.baseline.log")
                if not passed:
                    rows.append((m, "BASELINE FAILS", 0.0))
                    print(f"{m.name}: the unmutated selection fails (see {logs / m.name}.baseline.log)", flush=True)
                    continue
            copy = scratch_copy(Path(tmp) / "mutant")
            apply(copy, m)
            passed, took = run_tests(copy, m, logs / f"{m.name}.log")
        verdict = "survived" if passed else "caught"
        rows.append((m, verdict, took))
        print(f"{m.name}: {verdict} ({took:.0f} s)", flush=True)
    print()
    print("| mutation | file | bug | tests run | result | seconds |")
    print("|---|---|---|---|---|---|")
    for m, verdict, took in rows:
        print(f"| {m.name} | {m.path} | {m.what} | `{' '.join(m.tests)}` | {verdict} | {took:.0f} |")
    print(f"\npytest output of each run: {logs}")
    sys.exit(0 if all(v == "caught" for _, v, _ in rows) else 1)


if __name__ == "__main__":
    main()
