"""Tests run real servers through the helper the benchmarks share."""

from pipam.testing.server import PIPAM, Server, free_port

__all__ = ["PIPAM", "Server", "free_port"]
