"""Migration progress for an operator: a Rich bar with rate and ETA on a terminal, timestamped lines otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)

from pipam.migration.progress import Observer, Silent


class Bar:
    """A Rich progress bar per phase, for an operator at a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = RichProgress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task: int | None = None
        self.started = time.monotonic()
        self.done = 0
        self.bar.start()

    def phase(self, name: str, total: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=self.bar.tasks[self.task].total)
        self.started, self.done = time.monotonic(), 0
        self.task = self.bar.add_task(name, total=total, rate="")

    def advance(self, n: int) -> None:
        if self.task is None:
            return
        self.done += n
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        self.bar.update(self.task, advance=n, rate=f"{rate:,.0f} subnets/s")

    def note(self, message: str) -> None:
        self.bar.console.print(message, markup=False, highlight=False)

    def checkpoint(self, name: str) -> None:
        return None

    def close(self) -> None:
        self.bar.stop()


class Lines:
    """Plain timestamped lines (not a terminal: logs, CI), at most one progress line every few seconds."""

    def __init__(self, stream=sys.stderr, every: float = 2.0) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream
        self.every = every
        self.name, self.total, self.done = "", 0, 0
        self.started = self.last = time.monotonic()

    def _line(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=self.stream, flush=True)

    def phase(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, total, 0
        self.started = self.last = time.monotonic()
        self._line(f"{name}: {total} subnets")

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            rate = self.done / max(now - self.started, 1e-6)
            left = (self.total - self.done) / rate if rate else 0
            self._line(f"{self.name}: {self.done}/{self.total} subnets, {rate:,.0f}/s, ETA {left:,.0f}s")
            self.last = now

    def note(self, message: str) -> None:
        self._line(message)

    def checkpoint(self, name: str) -> None:
        return None

    def close(self) -> None:
        return None


def for_terminal(console: Console, quiet: bool = False) -> Observer:
    if quiet:
        return Silent()
    return Bar(console) if console.is_terminal else Lines()
