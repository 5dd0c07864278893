"""Pipam: IP address management with pluggable backends."""

__version__ = "0.1.0"
