"""What a migration reports while it runs. The CLI shows it (a progress bar, or log lines); tests
watch the named checkpoints (to kill or pause the process there)."""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def phase(self, name: str, total: int) -> None:
        """A phase starts: ``total`` subnets (or journal entries) to go."""

    def advance(self, n: int) -> None: ...

    def note(self, message: str) -> None: ...

    def checkpoint(self, name: str) -> None:
        """The run passed a named point (after-fence, in-batch-N, after-batch-N, ...): durable state
        up to here is committed, except for ``in-*`` points, which are inside a transaction."""

    def close(self) -> None: ...


class Silent:
    def phase(self, name: str, total: int) -> None:
        return None

    def advance(self, n: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def checkpoint(self, name: str) -> None:
        return None

    def close(self) -> None:
        return None
