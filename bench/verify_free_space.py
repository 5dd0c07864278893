"""What the free-space check costs verify, on the dataset of ``bench.migrate``.

Builds N addresses over S subnets on the builtin backend (``bench.migrate``'s dataset: every subnet
has about a hundred free ranges), migrates it to internal in a process of its own (its phase times
give the migration's verify), then verifies each backend in this process, alternating runs with the
check and without it (the same driver declaring no check). Figures per backend, all ratios from one
run: the check's share of a verify, timed inside the same run; and verify with / without, in wall
time and in CPU time (on SQLite the database works in this process too; on a shared, busy machine
CPU time is the steadier of the two).

    python -m bench.verify_free_space                                   # 1,000,000 addresses, SQLite
    python -m bench.verify_free_space --size 20000 --subnets 200        # a quick run
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from bench.common import console, fresh_url, machine, table, write_json
from bench.migrate import child
from pipam.config import load_settings
from pipam.db.engine import make_engine
from pipam.db.transactions import Runner
from pipam.ipam.interface import DriverContext, IpamDriver
from pipam.ipam.registry import load_driver
from pipam.migration import verify as verify_module
from pipam.migration.compare import Comparison
from pipam.migration.core_state import CoreSubnet


class WithoutCheck:
    """The same driver, declaring no free-space check: verify as it was before the check existed."""

    free_space_check = "none"

    def __init__(self, inner: IpamDriver) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CheckClock:
    """Accumulates the time verify spends in the free-space check: reading the free space, turning the
    core's allocations into ordered integers, comparing."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._compare = verify_module.compare_free_space
        self._read = verify_module.read_free_space
        self._values = CoreSubnet.values

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return run

    def __enter__(self) -> CheckClock:
        verify_module.compare_free_space = self.timed(self._compare)  # type: ignore[assignment]
        verify_module.read_free_space = self.timed(self._read)  # type: ignore[assignment]
        CoreSubnet.values = self.timed(self._values)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        verify_module.compare_free_space = self._compare  # type: ignore[assignment]
        verify_module.read_free_space = self._read  # type: ignore[assignment]
        CoreSubnet.values = self._values  # type: ignore[method-assign]


@dataclass
class Timing:
    wall: float
    cpu: float
    in_check: float  # wall seconds inside the free-space check
    result: Comparison


def timed_verify(runner: Runner, backend: str, with_check: bool) -> Timing:
    """One verify, in one snapshot as the CLI runs it."""
    cls = load_driver(backend)

    def run(tx: Any) -> Comparison:
        driver = cls(DriverContext(tx.session, None, tx.on_rollback))
        return verify_module.verify(tx.session, driver if with_check else WithoutCheck(driver))  # type: ignore[arg-type]

    with CheckClock() as clock:
        start, cpu = time.perf_counter(), time.process_time()
        result = runner.run(run, write=False, snapshot=True)
        return Timing(time.perf_counter() - start, time.process_time() - cpu, clock.seconds, result)


def main(
    size: int = typer.Option(1_000_000, help="Addresses in the dataset."),
    n_subnets: int = typer.Option(10_000, "--subnets", help="Subnets the addresses spread over."),
    db: str = typer.Option("sqlite", help="sqlite, postgresql or mariadb."),
    rounds: int = typer.Option(2, help="Verify runs with and without the check, per backend (alternating)."),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    url = fresh_url(db, f"verify_fs_{size}")
    t0 = time.perf_counter()
    child("build-one", url, str(size), str(n_subnets))
    console.print(f"built {size:,} addresses over {n_subnets:,} subnets in {time.perf_counter() - t0:.0f} s")
    migration = json.loads(child("run-one", url, "internal"))
    if migration["outcome"] != "completed" or not migration["clean"]:
        raise SystemExit(f"migration to internal did not complete clean: {migration}")
    migration_verify = migration["phases"]["verify"]
    console.print(f"migration builtin -> internal: verify phase {migration_verify:.1f} s (free-space check included)")

    engine = make_engine(url)
    runner = Runner(engine, load_settings(database_url=url).db_retries)
    out: dict[str, Any] = {"machine": machine(), "db": db, "size": size, "subnets": n_subnets, "backends": {}}
    rows = []
    for backend in ("internal", "builtin"):
        runs: dict[bool, list[Timing]] = {True: [], False: []}
        for i in range(rounds):
            for with_check in (True, False) if i % 2 == 0 else (False, True):
                timing = timed_verify(runner, backend, with_check)
                if not timing.result.clean:
                    raise SystemExit(f"verify of {backend} not clean: {timing.result.differences[:3]}")
                checked = timing.result.free_space["subnets_checked"]
                assert checked == (n_subnets if with_check else 0), timing.result.free_space
                runs[with_check].append(timing)
        best = {w: min(runs[w], key=lambda t: t.wall) for w in runs}
        best_cpu = {w: min(t.cpu for t in runs[w]) for w in runs}
        out["backends"][backend] = {
            ("with_check" if w else "without_check"): [
                {"wall_s": t.wall, "cpu_s": t.cpu, "in_check_s": t.in_check} for t in runs[w]
            ]
            for w in runs
        }
        rows.append(
            [
                backend,
                best[True].wall,
                best[False].wall,
                best[True].wall / best[False].wall,
                best_cpu[True] / best_cpu[False],
                f"{best[True].in_check / best[True].wall:.1%}",
                f"{best[True].in_check / migration_verify:.1%}",
            ]
        )
    engine.dispose()
    out["migration_verify_s"] = migration_verify
    table(
        f"verify of {size:,} addresses over {n_subnets:,} subnets ({db}), best of {rounds}",
        [
            "backend",
            "with check s",
            "without s",
            "with / without (wall)",
            "with / without (CPU)",
            "check / verify (same run)",
            "check / migration's verify",
        ],
        rows,
    )
    write_json(json_path, out)


if __name__ == "__main__":
    typer.run(main)
