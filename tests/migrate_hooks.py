"""``pipam`` with a migration observer that kills or pauses the process at a named checkpoint.

The crash and live-traffic tests run ``python -m tests.migrate_hooks --crash-at POINT -- ipam migrate ...``
instead of ``pipam ...``; production code only reports its checkpoints and knows nothing of this.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from pipam.cli import ipam as ipam_cli
from pipam.cli.main import app
from pipam.migration.progress import Observer


class Hooked:
    def __init__(self, inner: Observer, crash_at: str | None, pause_at: str | None, pause: float) -> None:
        self.inner, self.crash_at, self.pause_at, self.pause = inner, crash_at, pause_at, pause

    def phase(self, name: str, total: int) -> None:
        self.inner.phase(name, total)

    def advance(self, n: int) -> None:
        self.inner.advance(n)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def close(self) -> None:
        self.inner.close()

    def checkpoint(self, name: str) -> None:
        if name == self.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if name == self.pause_at:
            time.sleep(self.pause)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crash-at", help="kill -9 this process at the named checkpoint")
    parser.add_argument("--pause-at", help="sleep at the named checkpoint")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds to sleep at --pause-at")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the pipam command line, after --")
    options = parser.parse_args()
    plain = ipam_cli.make_observer
    ipam_cli.make_observer = lambda quiet: Hooked(plain(quiet), options.crash_at, options.pause_at, options.pause)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    sys.argv = ["pipam", *args]
    app()


if __name__ == "__main__":
    main()
