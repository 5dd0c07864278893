"""``pipam serve``: the REST API under uvicorn."""

from __future__ import annotations


def serve() -> None:
    """Serve the REST API."""
