"""Tests drive load through the generator the benchmarks share."""

from pipam.testing.load import Answer, PortLoad, make_subnet, port_in_subnet

__all__ = ["Answer", "PortLoad", "make_subnet", "port_in_subnet"]
