"""What handing work to the thread pool and back costs the server's event loop, on this machine.

Every change a request makes runs in Starlette's thread pool (``run_in_threadpool``, as the endpoints
call it), so one hop is part of every port create. The figure depends on the machine far more than on
Pipam: on this 2-core VM a hop wakes the other virtual CPU, which costs more than the hop's own code.
Measured here on uvloop, as ``pipam serve`` runs, with a trivial function; each figure is the median
round's time per call minus the same function called inline. ``--pinned`` runs the same measurement
with the process held on one CPU (``sched_setaffinity``), which shows how much of a hop is the
wake-up of the other one; ``asyncio``'s own ``run_in_executor`` is measured beside Starlette's path.

    python -m bench.thread_hop
    python -m bench.thread_hop --rounds 20 --calls 5000
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import typer
from starlette.concurrency import run_in_threadpool

from bench.common import console, table, write_json


def _work() -> int:
    return sum(range(100))


def _executor_hop(pool: ThreadPoolExecutor) -> Callable[[Callable[[], Any]], Awaitable[Any]]:
    async def hop(fn: Callable[[], Any]) -> Any:
        context = contextvars.copy_context()  # what run_in_threadpool also carries over
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(context.run, fn))

    return hop


async def _measure(rounds: int, calls: int) -> dict[str, float]:
    """Microseconds per hop, median round, of each way of hopping."""
    pool = ThreadPoolExecutor(max_workers=4)
    ways: dict[str, Callable[[Callable[[], Any]], Awaitable[Any]]] = {
        "starlette run_in_threadpool (anyio)": run_in_threadpool,
        "asyncio run_in_executor": _executor_hop(pool),
    }
    for hop in ways.values():  # threads started, code warm
        for _ in range(200):
            await hop(_work)
    spent: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            _work()
        inline = (time.perf_counter() - start) / calls
        for name, hop in ways.items():
            start = time.perf_counter()
            for _ in range(calls):
                await hop(_work)
            spent[name].append((time.perf_counter() - start) / calls - inline)
    pool.shutdown()
    return {name: statistics.median(times) * 1e6 for name, times in spent.items()}


def _run_inside(rounds: int, calls: int) -> dict[str, float]:
    try:
        import uvloop
    except ImportError:  # uvicorn's standard extra brings it; without it the server runs asyncio's loop too
        return asyncio.run(_measure(rounds, calls))
    return uvloop.run(_measure(rounds, calls))


def main(
    rounds: int = typer.Option(10, min=1, help="Rounds; the median round is reported."),
    calls: int = typer.Option(2000, min=1, help="Hops per round."),
    pinned: bool = typer.Option(True, help="Also measure with the process held on one CPU."),
    json_path: str | None = typer.Option(None, "--json", help="Also write the figures here."),
    held_on: int | None = typer.Option(None, hidden=True, help="Hold this process on that CPU, measure, print JSON."),
) -> None:
    """What one thread-pool hop costs the event loop here, free to use both CPUs and held on one."""
    if held_on is not None:
        os.sched_setaffinity(0, {held_on})
        print(json.dumps(_run_inside(rounds, calls)))
        return
    runs: dict[str, dict[str, float]] = {"free": _run_inside(rounds, calls)}
    if pinned:
        if not hasattr(os, "sched_setaffinity"):
            console.print("[yellow]no sched_setaffinity here: the pinned run is skipped[/]")
        else:
            cpu = min(os.sched_getaffinity(0))
            args = ["--held-on", str(cpu), "--rounds", str(rounds), "--calls", str(calls)]
            done = subprocess.run(
                [sys.executable, "-m", "bench.thread_hop", *args], capture_output=True, text=True, check=True
            )
            runs[f"held on CPU {cpu}"] = json.loads(done.stdout)
    names = list(runs["free"])
    table(
        f"one hop to the thread pool and back, microseconds (median of {rounds} rounds of {calls}, minus inline)",
        ["hop", *runs],
        [[name, *(f"{runs[where][name]:.1f}" for where in runs)] for name in names],
    )
    console.print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    write_json(json_path, {"rounds": rounds, "calls": calls, "microseconds": runs})


if __name__ == "__main__":
    typer.run(main)
